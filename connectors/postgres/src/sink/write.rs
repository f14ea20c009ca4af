//! Writing one batch of changes in one transaction.
//!
//! Changes are collapsed per table and key in record order, so the batch ends as applying them
//! one by one would: a later write of a key merges into (and replaces columns of) an earlier
//! one, a delete replaces what came before it, a write after a delete deletes first, a truncate
//! drops everything before it. Each table then gets at most a TRUNCATE, one DELETE and one
//! statement per column set, every value bound as a `text[]` (one array per column, unnested
//! and cast to the column type), so the SQL of a table stays the same from batch to batch and
//! sqlx reuses its prepared statement.

use std::collections::HashMap;

use sqlx::postgres::PgArguments;
use sqlx::{Arguments as _, PgPool};
use tracing::debug;

use super::encode::{self, Target};
use super::record::{Cell, Change};
use super::table::{self, TableId, TableInfo, quote};
use crate::config::InsertMode;
use crate::error::{Error, Result};

/// One key's net change within a batch.
#[derive(Debug)]
enum Entry {
    Delete(Vec<Cell>),
    Write {
        key: Vec<Cell>,
        row: Vec<Cell>,
        /// A delete of the key came first: the row is deleted before it is written.
        delete_first: bool,
    },
}

/// The changes of one table in a batch.
#[derive(Debug, Default)]
struct TableChanges {
    truncate: bool,
    /// Key identity -> index in `entries`.
    by_key: HashMap<String, usize>,
    entries: Vec<Entry>,
    /// Rows of tables without a key (`primary_key_mode: none`), in order.
    keyless: Vec<Vec<Cell>>,
}

/// The changes of one transaction, by table in order of first appearance.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    tables: Vec<(TableId, TableChanges)>,
}

fn identity(key: &[Cell]) -> String {
    let mut id = String::new();
    for cell in key {
        id.push_str(&format!("{:?}\u{0}", cell.value));
    }
    id
}

impl Batch {
    pub(crate) fn add(&mut self, table: &TableId, change: Change) {
        if let Change::Move { old_key, key, row } = change {
            self.add(table, Change::Delete { key: old_key });
            self.add(table, Change::Write { key, row });
            return;
        }
        let changes = match self.tables.iter().position(|(t, _)| t == table) {
            Some(i) => &mut self.tables[i].1,
            None => {
                self.tables.push((table.clone(), TableChanges::default()));
                &mut self.tables.last_mut().expect("just pushed").1
            }
        };
        match change {
            Change::Skip | Change::Move { .. } => {}
            Change::Truncate => {
                *changes = TableChanges {
                    truncate: true,
                    ..TableChanges::default()
                };
            }
            Change::Write { key, row } if key.is_empty() => changes.keyless.push(row),
            Change::Write { key, row } => {
                let id = identity(&key);
                match changes.by_key.get(&id) {
                    None => {
                        changes.by_key.insert(id, changes.entries.len());
                        changes.entries.push(Entry::Write {
                            key,
                            row,
                            delete_first: false,
                        });
                    }
                    Some(&i) => {
                        let entry = &mut changes.entries[i];
                        *entry = match std::mem::replace(entry, Entry::Delete(Vec::new())) {
                            Entry::Delete(_) => Entry::Write {
                                key,
                                row,
                                delete_first: true,
                            },
                            Entry::Write {
                                row: mut merged,
                                delete_first,
                                ..
                            } => {
                                for cell in row {
                                    match merged.iter_mut().find(|c| c.name == cell.name) {
                                        Some(old) => *old = cell,
                                        None => merged.push(cell),
                                    }
                                }
                                Entry::Write {
                                    key,
                                    row: merged,
                                    delete_first,
                                }
                            }
                        };
                    }
                }
            }
            Change::Delete { key } => {
                let id = identity(&key);
                match changes.by_key.get(&id) {
                    None => {
                        changes.by_key.insert(id, changes.entries.len());
                        changes.entries.push(Entry::Delete(key));
                    }
                    Some(&i) => changes.entries[i] = Entry::Delete(key),
                }
            }
        }
    }
}

/// Rows of one table with the same columns: one statement.
struct Group<'a> {
    names: Vec<&'a str>,
    key: Vec<&'a str>,
    rows: Vec<&'a [Cell]>,
}

/// Writes batches; knows the tables it has seen.
pub(crate) struct Writer {
    pool: PgPool,
    mode: InsertMode,
    auto_create: bool,
    auto_evolve: bool,
    tables: HashMap<TableId, TableInfo>,
}

impl Writer {
    pub(crate) fn new(
        pool: PgPool,
        mode: InsertMode,
        auto_create: bool,
        auto_evolve: bool,
    ) -> Self {
        Self {
            pool,
            mode,
            auto_create,
            auto_evolve,
            tables: HashMap::new(),
        }
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Writes the batch in one transaction; nothing of it is visible unless all of it is.
    pub(crate) async fn write(&mut self, batch: &Batch) -> Result<()> {
        let result = self.try_write(batch).await;
        if result.is_err() {
            // A table may have changed under us: read it again next time.
            self.tables.clear();
        }
        result
    }

    async fn try_write(&mut self, batch: &Batch) -> Result<()> {
        for (table, changes) in &batch.tables {
            self.prepare(table, changes).await?;
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| Error::database("cannot begin a transaction", e))?;
        let mut statements = 0usize;
        for (table, changes) in &batch.tables {
            let info = &self.tables[table];
            if changes.truncate {
                let sql = format!("TRUNCATE {}", table.quoted());
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| Error::database(format!("cannot truncate {table}"), e))?;
                statements += 1;
            }
            let deletes: Vec<&[Cell]> = changes
                .entries
                .iter()
                .filter_map(|e| match e {
                    Entry::Delete(key) => Some(key.as_slice()),
                    Entry::Write {
                        key,
                        delete_first: true,
                        ..
                    } => Some(key.as_slice()),
                    Entry::Write { .. } => None,
                })
                .collect();
            if !deletes.is_empty() {
                let (sql, args) = delete(table, info, &deletes)?;
                sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| Error::database(format!("cannot delete from {table}"), e))?;
                statements += 1;
            }
            // Rows with the same columns share a statement.
            let mut groups: Vec<Group<'_>> = Vec::new();
            let writes = changes.entries.iter().filter_map(|e| match e {
                Entry::Write { key, row, .. } => Some((key.as_slice(), row.as_slice())),
                Entry::Delete(_) => None,
            });
            let keyless = changes.keyless.iter().map(|row| (&[][..], row.as_slice()));
            for (key, row) in writes.chain(keyless) {
                let names: Vec<&str> = row.iter().map(|c| c.name.as_str()).collect();
                match groups.iter_mut().find(|g| g.names == names) {
                    Some(group) => group.rows.push(row),
                    None => groups.push(Group {
                        names,
                        key: key.iter().map(|c| c.name.as_str()).collect(),
                        rows: vec![row],
                    }),
                }
            }
            for g in &groups {
                let Some((sql, args)) = self.upsert(table, info, &g.names, &g.key, &g.rows)? else {
                    continue;
                };
                sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| Error::database(format!("cannot write to {table}"), e))?;
                statements += 1;
            }
        }
        tx.commit()
            .await
            .map_err(|e| Error::database("cannot commit", e))?;
        debug!(
            tables = batch.tables.len(),
            statements, "postgres-sink batch committed"
        );
        Ok(())
    }

    /// Makes sure the table exists and has every column the batch writes.
    async fn prepare(&mut self, table: &TableId, changes: &TableChanges) -> Result<()> {
        // Every column with a type: from the first cell that has a schema or a non-null value.
        let mut wanted: Vec<(String, String, bool)> = Vec::new();
        let mut key: Vec<String> = Vec::new();
        let cells = changes
            .entries
            .iter()
            .flat_map(|e| match e {
                Entry::Delete(key) => key.iter(),
                Entry::Write { row, .. } => row.iter(),
            })
            .chain(changes.keyless.iter().flatten());
        for cell in cells {
            let typed = match &cell.schema {
                Some(s) => Some((encode::column_type(s), s.optional)),
                None if !cell.value.is_null() => Some((encode::value_type(&cell.value), true)),
                None => None,
            };
            match wanted.iter_mut().find(|(n, _, _)| *n == cell.name) {
                Some(w) => {
                    if w.1.is_empty()
                        && let Some((ty, optional)) = typed
                    {
                        w.1 = ty;
                        w.2 = optional;
                    }
                }
                None => {
                    let (ty, optional) = typed.unwrap_or_default();
                    wanted.push((cell.name.clone(), ty, optional || cell.schema.is_none()));
                }
            }
        }
        for entry in &changes.entries {
            let (Entry::Delete(k) | Entry::Write { key: k, .. }) = entry;
            for cell in k {
                if !key.contains(&cell.name) {
                    key.push(cell.name.clone());
                }
            }
        }
        for w in &mut wanted {
            if w.1.is_empty() {
                w.1 = "text".to_owned();
            }
        }
        if !self.tables.contains_key(table) {
            let info = match table::describe(&self.pool, table).await? {
                Some(info) => info,
                None if self.auto_create && !wanted.is_empty() => {
                    table::create(&self.pool, table, &wanted, &key).await?;
                    table::describe(&self.pool, table)
                        .await?
                        .unwrap_or_default()
                }
                None => {
                    return Err(Error::Table {
                        table: table.to_string(),
                        message: "does not exist; create it or set auto_create: true".to_owned(),
                    });
                }
            };
            self.tables.insert(table.clone(), info);
        }
        let info = &self.tables[table];
        let missing: Vec<(String, String)> = wanted
            .iter()
            .filter(|(name, _, _)| !info.columns.contains_key(name))
            .map(|(name, ty, _)| (name.clone(), ty.clone()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if !self.auto_evolve {
            let names: Vec<&str> = missing.iter().map(|(n, _)| n.as_str()).collect();
            return Err(Error::Table {
                table: table.to_string(),
                message: format!(
                    "has no column {}; add it or set auto_evolve: true",
                    names.join(", ")
                ),
            });
        }
        table::add_columns(&self.pool, table, &missing).await?;
        let info = table::describe(&self.pool, table)
            .await?
            .unwrap_or_default();
        self.tables.insert(table.clone(), info);
        Ok(())
    }

    /// INSERT, upsert or UPDATE of rows that all have the columns `names`.
    fn upsert(
        &self,
        table: &TableId,
        info: &TableInfo,
        names: &[&str],
        key: &[&str],
        rows: &[&[Cell]],
    ) -> Result<Option<(String, PgArguments)>> {
        let (unnest, args, casts) = unnest(table, info, names, rows)?;
        let position = |name: &str| names.iter().position(|n| *n == name).unwrap_or(0);
        let columns: Vec<String> = names.iter().map(|n| quote(n)).collect();
        let sql = match self.mode {
            InsertMode::Insert | InsertMode::Upsert => {
                let mut sql = format!(
                    "INSERT INTO {} ({}) SELECT {} FROM {unnest}",
                    table.quoted(),
                    columns.join(", "),
                    casts.join(", ")
                );
                if self.mode == InsertMode::Upsert && !key.is_empty() {
                    let keys: Vec<String> = key.iter().map(|k| quote(k)).collect();
                    let sets: Vec<String> = names
                        .iter()
                        .filter(|n| !key.contains(n))
                        .map(|n| format!("{0} = EXCLUDED.{0}", quote(n)))
                        .collect();
                    sql.push_str(&format!(" ON CONFLICT ({}) DO ", keys.join(", ")));
                    if sets.is_empty() {
                        sql.push_str("NOTHING");
                    } else {
                        sql.push_str(&format!("UPDATE SET {}", sets.join(", ")));
                    }
                }
                sql
            }
            InsertMode::Update => {
                let sets: Vec<String> = names
                    .iter()
                    .filter(|n| !key.contains(n))
                    .map(|n| format!("{} = {}", quote(n), casts[position(n)]))
                    .collect();
                if sets.is_empty() {
                    return Ok(None);
                }
                let matches: Vec<String> = key
                    .iter()
                    .map(|k| format!("t.{} = {}", quote(k), casts[position(k)]))
                    .collect();
                format!(
                    "UPDATE {} AS t SET {} FROM {unnest} WHERE {}",
                    table.quoted(),
                    sets.join(", "),
                    matches.join(" AND ")
                )
            }
        };
        Ok(Some((sql, args)))
    }
}

/// `DELETE ... USING UNNEST(keys)`.
fn delete(table: &TableId, info: &TableInfo, keys: &[&[Cell]]) -> Result<(String, PgArguments)> {
    let names: Vec<&str> = keys[0].iter().map(|c| c.name.as_str()).collect();
    let (unnest, args, casts) = unnest(table, info, &names, keys)?;
    let matches: Vec<String> = names
        .iter()
        .zip(&casts)
        .map(|(n, cast)| format!("t.{} = {cast}", quote(n)))
        .collect();
    let sql = format!(
        "DELETE FROM {} AS t USING {unnest} WHERE {}",
        table.quoted(),
        matches.join(" AND ")
    );
    Ok((sql, args))
}

/// `UNNEST($1::text[], ...) AS u(c0, ...)` with one bound array per column, and the cast of
/// each column to its type (`u.c0::integer`).
fn unnest(
    table: &TableId,
    info: &TableInfo,
    names: &[&str],
    rows: &[&[Cell]],
) -> Result<(String, PgArguments, Vec<String>)> {
    let mut args = PgArguments::default();
    let mut params = Vec::with_capacity(names.len());
    let mut aliases = Vec::with_capacity(names.len());
    let mut casts = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let ty = info.columns.get(*name).ok_or_else(|| Error::Table {
            table: table.to_string(),
            message: format!("has no column {name}"),
        })?;
        let target = Target::of(ty);
        let column: Vec<Option<String>> = rows
            .iter()
            .map(|row| {
                let cell = row.iter().find(|c| c.name == *name);
                match cell {
                    Some(cell) => {
                        encode::text(&cell.value, &target).map_err(|message| Error::Record {
                            location: format!("{table}.{name}"),
                            message,
                        })
                    }
                    None => Ok(None),
                }
            })
            .collect::<Result<_>>()?;
        args.add(column).map_err(|e| Error::Record {
            location: format!("{table}.{name}"),
            message: e.to_string(),
        })?;
        params.push(format!("${}::text[]", i + 1));
        aliases.push(format!("c{i}"));
        casts.push(format!("u.c{i}::{ty}"));
    }
    let unnest = format!("UNNEST({}) AS u({})", params.join(", "), aliases.join(", "));
    Ok((unnest, args, casts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_connector_api::Value;

    fn cell(name: &str, value: impl Into<Value>) -> Cell {
        Cell {
            name: name.into(),
            value: value.into(),
            schema: None,
        }
    }

    fn write(id: i32, name: &str) -> Change {
        Change::Write {
            key: vec![cell("id", id)],
            row: vec![cell("id", id), cell("name", name)],
        }
    }

    fn delete(id: i32) -> Change {
        Change::Delete {
            key: vec![cell("id", id)],
        }
    }

    #[test]
    fn the_last_change_of_a_key_wins_and_deletes_come_first() {
        let t = TableId {
            schema: "public".into(),
            name: "t".into(),
        };
        let mut batch = Batch::default();
        batch.add(&t, write(1, "a"));
        batch.add(&t, delete(1));
        batch.add(&t, write(2, "b"));
        batch.add(&t, write(2, "c"));
        batch.add(&t, delete(3));
        batch.add(&t, write(3, "d"));
        let entries = &batch.tables[0].1.entries;
        assert!(matches!(&entries[0], Entry::Delete(k) if k[0].value == Value::Int32(1)));
        assert!(
            matches!(&entries[1], Entry::Write { row, delete_first: false, .. } if row[1].value == Value::from("c"))
        );
        assert!(
            matches!(&entries[2], Entry::Write { row, delete_first: true, .. } if row[1].value == Value::from("d"))
        );
        batch.add(&t, Change::Truncate);
        batch.add(&t, write(4, "e"));
        let changes = &batch.tables[0].1;
        assert!(changes.truncate);
        assert_eq!(changes.entries.len(), 1);
    }
}
