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

async fn one(pool: &PgPool, sql: &'static str) -> Result<PgRow, ConnectorError> {
    sqlx::query(sql)
        .fetch_one(pool)
        .await
        .map_err(|e| db_error(sql, e))
}

/// Fails with one clear error per problem that makes capture impossible.
pub(crate) async fn check(pool: &PgPool, config: &CdcConfig) -> Result<(), ConnectorError> {
    let wal_level: String = one(pool, "SHOW wal_level").await?.get(0);
    if wal_level != "logical" {
        return Err(ConnectorError::config(format!(
            "Postgres has wal_level={wal_level}; change data capture needs wal_level=logical (set it in postgresql.conf and restart Postgres)"
        )));
    }
    let row = one(pool, "SELECT current_user::text, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user").await?;
    let (user, can_replicate): (String, bool) = (row.get(0), row.get(1));
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
        let (identity, has_pk): (String, bool) = (row.get(0), row.get(1));
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

/// Creates the publication if missing; when tables are configured, makes it cover exactly them.
pub(crate) async fn ensure_publication(
    pool: &PgPool,
    config: &CdcConfig,
) -> Result<(), ConnectorError> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)")
            .bind(&config.publication)
            .fetch_one(pool)
            .await
            .map_err(|e| db_error("cannot look up publications", e))?;
    let tables = config
        .tables
        .iter()
        .map(|t| split_table(t).map(|(s, n)| qualified(s, n)))
        .collect::<Result<Vec<_>, _>>()?
        .join(", ");
    let publication = quote_ident(&config.publication);
    let sql = match (exists, tables.is_empty()) {
        (false, true) => format!("CREATE PUBLICATION {publication} FOR ALL TABLES"),
        (false, false) => format!("CREATE PUBLICATION {publication} FOR TABLE {tables}"),
        (true, false) => format!("ALTER PUBLICATION {publication} SET TABLE {tables}"),
        (true, true) => return Ok(()),
    };
    sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
        .execute(pool)
        .await
        .map_err(|e| db_error(&format!("cannot set up the publication ({sql})"), e))?;
    Ok(())
}

/// A table the publication covers.
#[derive(Debug, Clone)]
pub(crate) struct TableRef {
    pub(crate) oid: u32,
    pub(crate) schema: String,
    pub(crate) name: String,
}

/// The publication's tables minus the excluded ones.
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
    Ok(rows
        .into_iter()
        .map(|r| TableRef {
            oid: r.get::<i64, _>(0) as u32,
            schema: r.get(1),
            name: r.get(2),
        })
        .filter(|t| !excluded(config, &t.schema, &t.name))
        .collect())
}

pub(crate) fn excluded(config: &CdcConfig, schema: &str, name: &str) -> bool {
    config
        .exclude_tables
        .iter()
        .any(|x| split_table(x).is_ok_and(|(s, n)| s == schema && n == name))
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
    Ok(rows
        .into_iter()
        .map(|r| CatalogColumn {
            name: r.get(0),
            type_oid: r.get::<i64, _>(1) as u32,
            typmod: r.get(2),
            primary_key: r.get(3),
        })
        .collect())
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
            .into_iter()
            .map(|r| {
                let oid = r.get::<i64, _>(0) as u32;
                (
                    oid,
                    Raw {
                        name: r.get(1),
                        kind: r.get(2),
                        elem: r.get::<i64, _>(3) as u32,
                        base: r.get::<i64, _>(4) as u32,
                        labels: r.get(5),
                    },
                )
            })
            .collect();
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
    Ok(row.map(|r| {
        r.get::<Option<String>, _>(0)
            .and_then(|lsn| pg_walstream::parse_lsn(&lsn).ok())
    }))
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
    Ok(one(pool, "SELECT current_database()::text").await?.get(0))
}
