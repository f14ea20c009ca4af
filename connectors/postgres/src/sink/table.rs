//! Which table a record goes to (`table_name_format`, `topic_pattern`), and the tables
//! themselves: their columns read from the catalog, created (`auto_create`) and widened
//! (`auto_evolve`) from the record schemas.

use std::collections::HashMap;
use std::fmt;

use regex::Regex;
use sqlx::PgPool;

use crate::config::SinkConfig;
use crate::error::{Error, Result};

/// A schema-qualified table name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TableId {
    pub(crate) schema: String,
    pub(crate) name: String,
}

impl TableId {
    /// `"schema"."table"`, safe to put in SQL.
    pub(crate) fn quoted(&self) -> String {
        format!("{}.{}", quote(&self.schema), quote(&self.name))
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// A quoted identifier: any name, including quotes, is safe.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Topic -> table, from `table_name_format` and `topic_pattern`.
#[derive(Debug, Clone)]
pub struct TableNamer {
    format: String,
    pattern: Option<Regex>,
    schema: String,
    cache: HashMap<String, TableId>,
}

impl TableNamer {
    /// Checks the format's placeholders against the pattern; errors name the field.
    pub(crate) fn new(config: &SinkConfig) -> std::result::Result<Self, String> {
        let pattern = match &config.topic_pattern {
            Some(p) => Some(
                Regex::new(&format!("^(?:{p})$"))
                    .map_err(|e| format!("config.topic_pattern: {e}"))?,
            ),
            None => None,
        };
        let mut rest = config.table_name_format.as_str();
        while let Some(start) = rest.find("${") {
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| "config.table_name_format: `${` without a closing `}`".to_owned())?;
            let name = &rest[start + 2..start + end];
            let known = name == "topic"
                || pattern.as_ref().is_some_and(|p| {
                    name.parse::<usize>().map_or_else(
                        |_| p.capture_names().flatten().any(|n| n == name),
                        |i| i < p.captures_len(),
                    )
                });
            if !known {
                return Err(format!(
                    "config.table_name_format: unknown placeholder `${{{name}}}`; expected `${{topic}}` or a group of topic_pattern"
                ));
            }
            rest = &rest[start + end..];
        }
        Ok(Self {
            format: config.table_name_format.clone(),
            pattern,
            schema: config.schema.clone(),
            cache: HashMap::new(),
        })
    }

    /// The table of a topic.
    pub(crate) fn table(&mut self, topic: &str) -> Result<TableId> {
        if let Some(id) = self.cache.get(topic) {
            return Ok(id.clone());
        }
        let id = self.resolve(topic)?;
        self.cache.insert(topic.to_owned(), id.clone());
        Ok(id)
    }

    fn resolve(&self, topic: &str) -> Result<TableId> {
        let fail = |message: String| Error::TableName {
            topic: topic.to_owned(),
            message,
        };
        let captures =
            match &self.pattern {
                Some(p) => Some(p.captures(topic).ok_or_else(|| {
                    fail(format!("does not match topic_pattern `{}`", p.as_str()))
                })?),
                None => None,
            };
        let mut name = String::new();
        let mut rest = self.format.as_str();
        while let Some(start) = rest.find("${") {
            name.push_str(&rest[..start]);
            let end = rest[start..].find('}').unwrap_or(rest.len() - start);
            let placeholder = &rest[start + 2..start + end];
            if placeholder == "topic" {
                name.push_str(topic);
            } else if let Some(c) = &captures {
                let group = match placeholder.parse::<usize>() {
                    Ok(i) => c.get(i),
                    Err(_) => c.name(placeholder),
                };
                name.push_str(group.map_or("", |m| m.as_str()));
            }
            rest = &rest[(start + end + 1).min(rest.len())..];
        }
        name.push_str(rest);
        let parts: Vec<&str> = name.split('.').collect();
        match parts.as_slice() {
            [table] if !table.is_empty() => Ok(TableId {
                schema: self.schema.clone(),
                name: (*table).to_owned(),
            }),
            [schema, table] if !schema.is_empty() && !table.is_empty() => Ok(TableId {
                schema: (*schema).to_owned(),
                name: (*table).to_owned(),
            }),
            _ => Err(fail(format!(
                "table_name_format gives `{name}`; expected `table` or `schema.table` (use topic_pattern to take parts of a dotted topic)"
            ))),
        }
    }
}

/// A table's columns and their types (`format_type` without modifiers: what values are cast to).
#[derive(Debug, Clone, Default)]
pub(crate) struct TableInfo {
    pub(crate) columns: HashMap<String, String>,
}

/// The table's columns, or `None` when it does not exist.
pub(crate) async fn describe(pool: &PgPool, table: &TableId) -> Result<Option<TableInfo>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.attname::text, format_type(a.atttypid, NULL) FROM pg_attribute a \
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .bind(table.quoted())
    .fetch_all(pool)
    .await
    .map_err(|e| Error::database(format!("cannot read the columns of {table}"), e))?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(TableInfo {
        columns: rows.into_iter().collect(),
    }))
}

/// `CREATE TABLE IF NOT EXISTS` with these columns, key columns as the primary key.
pub(crate) async fn create(
    pool: &PgPool,
    table: &TableId,
    columns: &[(String, String, bool)],
    key: &[String],
) -> Result<()> {
    let mut sql = format!("CREATE TABLE IF NOT EXISTS {} (", table.quoted());
    for (i, (name, ty, nullable)) in columns.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("{} {ty}", quote(name)));
        if !nullable || key.contains(name) {
            sql.push_str(" NOT NULL");
        }
    }
    if !key.is_empty() {
        let key: Vec<String> = key.iter().map(|k| quote(k)).collect();
        sql.push_str(&format!(", PRIMARY KEY ({})", key.join(", ")));
    }
    sql.push(')');
    tracing::info!(table = %table, sql = %sql, "postgres-sink creating table");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await
        .map_err(|e| Error::database(format!("cannot create {table}"), e))?;
    Ok(())
}

/// `ALTER TABLE ... ADD COLUMN IF NOT EXISTS` (nullable) for each column.
pub(crate) async fn add_columns(
    pool: &PgPool,
    table: &TableId,
    columns: &[(String, String)],
) -> Result<()> {
    let adds: Vec<String> = columns
        .iter()
        .map(|(name, ty)| format!("ADD COLUMN IF NOT EXISTS {} {ty}", quote(name)))
        .collect();
    let sql = format!("ALTER TABLE {} {}", table.quoted(), adds.join(", "));
    tracing::info!(table = %table, sql = %sql, "postgres-sink adding columns");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await
        .map_err(|e| Error::database(format!("cannot add columns to {table}"), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namer(extra: serde_json::Value) -> std::result::Result<TableNamer, String> {
        let mut input = serde_json::json!({"topics": ["t"], "url": "postgres://h/db"});
        input
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let config: SinkConfig = crate::config::sink_spec()
            .validate(input.as_object().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        TableNamer::new(&config)
    }

    #[test]
    fn topics_map_to_tables() {
        let mut plain = namer(serde_json::json!({})).unwrap();
        assert_eq!(
            plain.table("orders").unwrap(),
            TableId {
                schema: "public".into(),
                name: "orders".into()
            }
        );
        assert!(
            plain
                .table("a.b.c")
                .unwrap_err()
                .to_string()
                .contains("topic_pattern")
        );
        let mut mapped = namer(serde_json::json!({
            "topic_pattern": "shop\\.(?<schema>[^.]+)\\.(.+)",
            "table_name_format": "${schema}.copy_${2}",
        }))
        .unwrap();
        assert_eq!(
            mapped.table("shop.sales.items").unwrap(),
            TableId {
                schema: "sales".into(),
                name: "copy_items".into()
            }
        );
        assert!(
            mapped
                .table("other")
                .unwrap_err()
                .to_string()
                .contains("does not match")
        );
        let err = namer(serde_json::json!({"table_name_format": "${3}"})).unwrap_err();
        assert!(
            err.starts_with("config.table_name_format: unknown placeholder `${3}`"),
            "{err}"
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        let id = TableId {
            schema: "s".into(),
            name: "we\"ird".into(),
        };
        assert_eq!(id.quoted(), "\"s\".\"we\"\"ird\"");
    }
}
