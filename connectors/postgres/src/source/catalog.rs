//! Everything read from or set up in the database over a normal (sqlx) connection: checks with
//! clear errors, the publication, the captured tables and their columns, custom types.

use std::collections::HashMap;

use sluice_connector_api::{ConnectorError, ErrorKind};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{Row, postgres::PgRow};

use super::types::{PgType, builtin};
use crate::config::CdcConfig;

/// Classifies a database error.
pub(crate) fn db_error(context: &str, e: sqlx::Error) -> ConnectorError {
    let kind = match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Protocol(_) => ErrorKind::Retriable,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some(code) if code.starts_with("28") => ErrorKind::Auth,
            Some(code) if code.starts_with("08") || code.starts_with("57P") || code == "53300" => {
                ErrorKind::Retriable
            }
            _ => ErrorKind::Fatal,
        },
        _ => ErrorKind::Fatal,
    };
    ConnectorError::with_source(kind, format!("{context}: {e}"), e)
}

pub(crate) fn connect_options(config: &CdcConfig) -> Result<PgConnectOptions, ConnectorError> {
    let mut options: PgConnectOptions = config.url.parse().map_err(|e| {
        ConnectorError::config(format!(
            "url: expected postgres://user@host:port/database: {e}"
        ))
    })?;
    if let Some(password) = config.password.as_deref().filter(|p| !p.is_empty()) {
        options = options.password(password);
    }
    let ssl = match config.ssl_mode.as_str() {
        "disable" => PgSslMode::Disable,
        "require" => PgSslMode::Require,
        _ => PgSslMode::Prefer,
    };
    Ok(options
        .ssl_mode(ssl)
        .options([("TimeZone", "UTC")])
        .application_name("sluice-cdc"))
}

pub(crate) async fn pool(config: &CdcConfig) -> Result<PgPool, ConnectorError> {
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(std::time::Duration::from_secs(30))
        .connect_with(connect_options(config)?)
        .await
        .map_err(|e| db_error("cannot connect to Postgres", e))
}

/// A libpq connection string for the replication connection.
pub(crate) fn replication_conninfo(config: &CdcConfig) -> Result<String, ConnectorError> {
    let options = connect_options(config)?;
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut parts = vec![
        format!("host={}", quote(options.get_host())),
        format!("port={}", options.get_port()),
        format!("user={}", quote(options.get_username())),
        "replication=database".to_owned(),
        format!("sslmode={}", config.ssl_mode),
        "application_name='sluice-cdc'".to_owned(),
        "options='-c TimeZone=UTC'".to_owned(),
    ];
    if let Some(db) = options.get_database() {
        parts.push(format!("dbname={}", quote(db)));
    }
    if let Some(password) = config.password.as_deref().filter(|p| !p.is_empty()) {
        parts.push(format!("password={}", quote(password)));
    } else if let Ok(url) = url_password(&config.url) {
        parts.extend(url.map(|p| format!("password={}", quote(&p))));
    }
    Ok(parts.join(" "))
}

fn url_password(url: &str) -> Result<Option<String>, ()> {
    let rest = url.split_once("://").ok_or(())?.1;
    let userinfo = rest.split_once('@').map(|(u, _)| u).ok_or(())?;
    Ok(userinfo.split_once(':').map(|(_, p)| p.to_owned()))
}

/// Column `i` of a row read from the database: a clear error, never a panic, when it is missing or
/// of another type.
pub(crate) fn column<'r, T>(row: &'r PgRow, i: usize, what: &str) -> Result<T, ConnectorError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(i)
        .map_err(|e| db_error(&format!("cannot read {what} (column {i})"), e))
}

async fn one(pool: &PgPool, sql: &'static str) -> Result<PgRow, ConnectorError> {
    sqlx::query(sql)
        .fetch_one(pool)
        .await
        .map_err(|e| db_error(sql, e))
}

/// Fails with one clear error per problem that makes capture impossible.
pub(crate) async fn check(pool: &PgPool, config: &CdcConfig) -> Result<(), ConnectorError> {
    let wal_level: String = column(&one(pool, "SHOW wal_level").await?, 0, "wal_level")?;
    if wal_level != "logical" {
        return Err(ConnectorError::config(format!(
            "Postgres has wal_level={wal_level}; change data capture needs wal_level=logical (set it in postgresql.conf and restart Postgres)"
        )));
    }
    let row = one(pool, "SELECT current_user::text, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user").await?;
    let (user, can_replicate): (String, bool) = (
        column(&row, 0, "the current user")?,
        column(&row, 1, "the replication attribute")?,
    );
    if !can_replicate {
        return Err(ConnectorError::new(
            ErrorKind::Auth,
            format!(
                "user {user} lacks the REPLICATION attribute; run ALTER ROLE {user} REPLICATION"
            ),
        ));
    }
    for table in &config.tables {
        let (schema, name) = split_table(table)?;
        let row = sqlx::query(
            "SELECT c.relreplident::text, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
        )
        .bind(schema)
        .bind(name)
        .fetch_optional(pool)
        .await
        .map_err(|e| db_error("cannot look up tables", e))?;
        let Some(row) = row else {
            return Err(ConnectorError::config(format!(
                "tables: table {schema}.{name} does not exist"
            )));
        };
        let (identity, has_pk): (String, bool) = (
            column(&row, 0, "the replica identity")?,
            column(&row, 1, "whether the table has a primary key")?,
        );
        if identity == "d" && !has_pk {
            return Err(ConnectorError::config(format!(
                "tables: table {schema}.{name} has no primary key and REPLICA IDENTITY DEFAULT, so its updates and deletes \
                 cannot be captured; add a primary key or run ALTER TABLE {schema}.{name} REPLICA IDENTITY FULL"
            )));
        }
    }
    Ok(())
}

pub(crate) fn split_table(table: &str) -> Result<(&str, &str), ConnectorError> {
    match table.split_once('.') {
        Some((s, t)) if !s.is_empty() && !t.is_empty() => Ok((s, t)),
        None if !table.is_empty() => Ok(("public", table)),
        _ => Err(ConnectorError::config(format!(
            "tables: expected schema.table, got `{table}`"
        ))),
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(crate) fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// Creates the publication for the captured tables, or adds the ones it lacks. It never removes a
/// table: a publication may be shared by connectors, and a table dropped from it would silently
/// stop another connector's changes.
pub(crate) async fn ensure_publication(
    pool: &PgPool,
    config: &CdcConfig,
) -> Result<(), ConnectorError> {
    let wanted = config
        .tables
        .iter()
        .map(|t| split_table(t))
        .collect::<Result<Vec<_>, _>>()?;
    let publication = quote_ident(&config.publication);
    // Two connectors may create the same publication at once: the loser adds its tables instead.
    for attempt in 0..2 {
        let row = sqlx::query("SELECT puballtables FROM pg_publication WHERE pubname = $1")
            .bind(&config.publication)
            .fetch_optional(pool)
            .await
            .map_err(|e| db_error("cannot look up publications", e))?;
        let sql = match row {
            None if wanted.is_empty() => format!("CREATE PUBLICATION {publication} FOR ALL TABLES"),
            None => format!(
                "CREATE PUBLICATION {publication} FOR TABLE {}",
                wanted
                    .iter()
                    .map(|(s, n)| qualified(s, n))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(row) => {
                if column::<bool>(&row, 0, "puballtables")? || wanted.is_empty() {
                    return Ok(());
                }
                // The tables added to it (a partitioned table as itself, not its partitions).
                let present = sqlx::query(
                    "SELECT n.nspname::text, c.relname::text FROM pg_publication_rel r \
                     JOIN pg_publication p ON p.oid = r.prpubid JOIN pg_class c ON c.oid = r.prrelid \
                     JOIN pg_namespace n ON n.oid = c.relnamespace WHERE p.pubname = $1",
                )
                .bind(&config.publication)
                .fetch_all(pool)
                .await
                .map_err(|e| db_error("cannot list the publication's tables", e))?
                .iter()
                .map(|r| Ok((column::<String>(r, 0, "schemaname")?, column::<String>(r, 1, "tablename")?)))
                .collect::<Result<Vec<_>, ConnectorError>>()?;
                let missing: Vec<String> = wanted
                    .iter()
                    .filter(|(s, n)| !present.iter().any(|(ps, pn)| ps == *s && pn == *n))
                    .map(|(s, n)| qualified(s, n))
                    .collect();
                if missing.is_empty() {
                    return Ok(());
                }
                format!(
                    "ALTER PUBLICATION {publication} ADD TABLE {}",
                    missing.join(", ")
                )
            }
        };
        match sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(pool)
            .await
        {
            Ok(_) => return Ok(()),
            // 42710 duplicate_object: created meanwhile; look again and add to it.
            Err(sqlx::Error::Database(e))
                if attempt == 0 && e.code().as_deref() == Some("42710") => {}
            Err(e) => {
                return Err(db_error(
                    &format!("cannot set up the publication ({sql})"),
                    e,
                ));
            }
        }
    }
    Ok(())
}

/// A table the publication covers.
#[derive(Debug, Clone)]
pub(crate) struct TableRef {
    pub(crate) oid: u32,
    pub(crate) schema: String,
    pub(crate) name: String,
}

/// The publication's tables that this connector captures: those in `tables` (all when empty)
/// minus the excluded ones. A shared publication may hold other connectors' tables too.
pub(crate) async fn captured_tables(
    pool: &PgPool,
    config: &CdcConfig,
) -> Result<Vec<TableRef>, ConnectorError> {
    let rows = sqlx::query(
        "SELECT c.oid::int8, p.schemaname::text, p.tablename::text FROM pg_publication_tables p \
         JOIN pg_namespace n ON n.nspname = p.schemaname \
         JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename \
         WHERE p.pubname = $1 ORDER BY 2, 3",
    )
    .bind(&config.publication)
    .fetch_all(pool)
    .await
    .map_err(|e| db_error("cannot list the publication's tables", e))?;
    let mut tables = Vec::with_capacity(rows.len());
    for r in &rows {
        let table = TableRef {
            oid: column::<i64>(r, 0, "a table's oid")? as u32,
            schema: column(r, 1, "a table's schema")?,
            name: column(r, 2, "a table's name")?,
        };
        if captured(pool, config, table.oid, &table.schema, &table.name).await? {
            tables.push(table);
        }
    }
    Ok(tables)
}

/// Whether this connector captures table `oid` (`schema.name`): it is not in `exclude_tables`,
/// and `tables` is empty or lists it or a partitioned table it is a partition of (a publication
/// of a partitioned table sends its partitions' changes under their own names).
pub(crate) async fn captured(
    pool: &PgPool,
    config: &CdcConfig,
    oid: u32,
    schema: &str,
    name: &str,
) -> Result<bool, ConnectorError> {
    let named = |list: &[String], schema: &str, name: &str| {
        list.iter()
            .any(|x| split_table(x).is_ok_and(|(s, n)| s == schema && n == name))
    };
    if named(&config.exclude_tables, schema, name) {
        return Ok(false);
    }
    if config.tables.is_empty() || named(&config.tables, schema, name) {
        return Ok(true);
    }
    let ancestors = sqlx::query(
        "SELECT n.nspname::text, c.relname::text FROM pg_partition_ancestors($1::int8::oid) a \
         JOIN pg_class c ON c.oid = a.relid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE a.relid <> $1::int8::oid",
    )
    .bind(i64::from(oid))
    .fetch_all(pool)
    .await
    .map_err(|e| db_error("cannot look up a table's partition parents", e))?;
    for row in &ancestors {
        let (s, n): (String, String) = (
            column(row, 0, "a parent table's schema")?,
            column(row, 1, "a parent table's name")?,
        );
        if named(&config.exclude_tables, &s, &n) {
            return Ok(false);
        }
        if named(&config.tables, &s, &n) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A column as the catalog describes it.
#[derive(Debug, Clone)]
pub(crate) struct CatalogColumn {
    pub(crate) name: String,
    pub(crate) type_oid: u32,
    pub(crate) typmod: i32,
    pub(crate) primary_key: bool,
}

pub(crate) async fn columns(pool: &PgPool, oid: u32) -> Result<Vec<CatalogColumn>, ConnectorError> {
    let rows = sqlx::query(
        "SELECT a.attname::text, a.atttypid::int8, a.atttypmod, \
                COALESCE(a.attnum = ANY(i.indkey::int2[]), false) \
         FROM pg_attribute a LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary \
         WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
    )
    .bind(i64::from(oid))
    .fetch_all(pool)
    .await
    .map_err(|e| db_error("cannot read table columns", e))?;
    rows.iter()
        .map(|r| {
            Ok(CatalogColumn {
                name: column(r, 0, "a column's name")?,
                type_oid: column::<i64>(r, 1, "a column's type")? as u32,
                typmod: column(r, 2, "a column's type modifier")?,
                primary_key: column(r, 3, "whether a column is in the key")?,
            })
        })
        .collect()
}

/// Custom types (enums, domains, arrays of them) by OID, read from the catalog.
#[derive(Debug, Default)]
pub(crate) struct Types {
    custom: HashMap<u32, PgType>,
}

impl Types {
    pub(crate) async fn load(pool: &PgPool) -> Result<Self, ConnectorError> {
        let rows = sqlx::query(
            "SELECT t.oid::int8, t.typname::text, t.typtype::text, t.typelem::int8, t.typbasetype::int8, \
                    (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) \
             FROM pg_type t WHERE t.oid >= 16384 OR t.typtype IN ('e', 'd')",
        )
        .fetch_all(pool)
        .await
        .map_err(|e| db_error("cannot read custom types", e))?;
        struct Raw {
            name: String,
            kind: String,
            elem: u32,
            base: u32,
            labels: Option<String>,
        }
        let raw: HashMap<u32, Raw> = rows
            .iter()
            .map(|r| {
                let oid = column::<i64>(r, 0, "a type's oid")? as u32;
                Ok((
                    oid,
                    Raw {
                        name: column(r, 1, "a type's name")?,
                        kind: column(r, 2, "a type's kind")?,
                        elem: column::<i64>(r, 3, "a type's element type")? as u32,
                        base: column::<i64>(r, 4, "a type's base type")? as u32,
                        labels: column(r, 5, "an enum's labels")?,
                    },
                ))
            })
            .collect::<Result<_, ConnectorError>>()?;
        let resolve_one = |oid: u32| -> Option<PgType> {
            let t = raw.get(&oid)?;
            Some(match t.kind.as_str() {
                "e" => PgType::Enum {
                    values: t
                        .labels
                        .as_deref()
                        .unwrap_or_default()
                        .split(',')
                        .map(str::to_owned)
                        .collect(),
                },
                "d" => builtin(t.base, -1).unwrap_or_else(|| PgType::Other(t.name.clone())),
                _ => PgType::Other(t.name.clone()),
            })
        };
        let mut custom = HashMap::new();
        for (&oid, t) in &raw {
            let ty = if t.elem != 0 && t.name.starts_with('_') {
                let element = builtin(t.elem, -1)
                    .or_else(|| resolve_one(t.elem))
                    .unwrap_or(PgType::Other(t.name.clone()));
                PgType::Array(Box::new(element))
            } else {
                resolve_one(oid).unwrap_or(PgType::Other(t.name.clone()))
            };
            custom.insert(oid, ty);
        }
        Ok(Self { custom })
    }

    /// The type of a column; `None` for an OID the catalog did not list when loaded.
    pub(crate) fn resolve(&self, oid: u32, typmod: i32) -> Option<PgType> {
        builtin(oid, typmod).or_else(|| self.custom.get(&oid).cloned())
    }
}

/// Whether the replication slot exists, and its confirmed flush LSN.
pub(crate) async fn slot(pool: &PgPool, slot: &str) -> Result<Option<Option<u64>>, ConnectorError> {
    let row = sqlx::query(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(pool)
    .await
    .map_err(|e| db_error("cannot look up the replication slot", e))?;
    row.map(|r| {
        Ok(column::<Option<String>>(&r, 0, "the slot's confirmed LSN")?
            .and_then(|lsn| pg_walstream::parse_lsn(&lsn).ok()))
    })
    .transpose()
}

/// Whether Postgres invalidated the slot (removed WAL it still needed): it can never stream again.
pub(crate) async fn slot_lost(pool: &PgPool, slot: &str) -> Result<bool, ConnectorError> {
    let row = sqlx::query(
        "SELECT COALESCE(wal_status = 'lost', false) FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(pool)
    .await
    .map_err(|e| db_error("cannot look up the replication slot", e))?;
    row.map_or(Ok(false), |r| column(&r, 0, "the slot's WAL status"))
}

pub(crate) async fn drop_slot(pool: &PgPool, slot: &str) -> Result<(), ConnectorError> {
    sqlx::query("SELECT pg_drop_replication_slot($1)")
        .bind(slot)
        .execute(pool)
        .await
        .map_err(|e| db_error("cannot drop the replication slot", e))?;
    Ok(())
}

pub(crate) async fn database(pool: &PgPool) -> Result<String, ConnectorError> {
    column(
        &one(pool, "SELECT current_database()::text").await?,
        0,
        "the database name",
    )
}
