//! The SQL user loaders: a configured query on PostgreSQL or MySQL/MariaDB
//! with the user id as its one parameter.

use std::str::FromStr as _;
use std::time::Duration;

use crate::error::SetupError;
use async_trait::async_trait;
use serde_json::Value;
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Column as _, Connection as _, Executor as _, Row as _, TypeInfo as _, ValueRef as _};

use super::{LoadFailure, LoaderError, UserLoader};

/// PostgreSQL's SQLSTATE for a statement cancelled by `statement_timeout`.
const PG_QUERY_CANCELED: &str = "57014";
/// MariaDB's `max_statement_time` and MySQL's `max_execution_time` errors.
const MYSQL_STATEMENT_TIMEOUTS: [u16; 2] = [1969, 3024];

/// How an SQL loader reaches its database.
#[derive(Clone)]
pub struct SqlLoaderConfig {
    /// `postgres://…` or `mysql://…`, credentials included.
    pub url: String,
    /// A query with one parameter, the user id (`$1` on PostgreSQL, `?` on
    /// MySQL). Its first row is the user: one column holds the detail as
    /// JSON (a JSON column, or text that is JSON); several columns become
    /// a JSON object keyed by column name. No row means no detail.
    pub query: String,
    /// The most connections the pool opens.
    pub max_connections: u32,
    /// The longest the query may run (the server cancels it past this); a
    /// connection must come within half of it.
    pub timeout: Duration,
}

impl std::fmt::Debug for SqlLoaderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("SqlLoaderConfig")
            .field("query", &self.query)
            .field("max_connections", &self.max_connections)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SqlLoaderConfig {
    /// A config with a pool of 4 connections and a 2 s timeout.
    pub fn new(url: impl Into<String>, query: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            query: query.into(),
            max_connections: 4,
            timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Debug)]
enum Pool {
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// Loads a user's detail with an SQL query, through a bounded pool that
/// connects lazily: the service starts while the database is down, and
/// loads fail with a loader error until it is back.
#[derive(Debug)]
pub struct SqlLoader {
    pool: Pool,
    query: String,
    timeout: Duration,
}

impl SqlLoader {
    /// A loader on PostgreSQL; the query runs under `statement_timeout`.
    pub fn postgres(config: SqlLoaderConfig) -> Result<Self, SetupError> {
        let options = PgConnectOptions::from_str(&config.url)
            .map_err(|e| SetupError::Loader(format!("invalid PostgreSQL URL for the loader: {e}")))?
            .options([("statement_timeout", config.timeout.as_millis())]);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.timeout / 2)
            .connect_lazy_with(options);
        Ok(Self::with_pool(Pool::Postgres(pool), config))
    }

    /// A loader on MySQL or MariaDB; the query runs under MariaDB's
    /// `max_statement_time` or MySQL's `max_execution_time`.
    pub fn mysql(config: SqlLoaderConfig) -> Result<Self, SetupError> {
        let options = MySqlConnectOptions::from_str(&config.url)
            .map_err(|e| SetupError::Loader(format!("invalid MySQL URL for the loader: {e}")))?;
        let timeout = config.timeout;
        let pool = MySqlPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.timeout / 2)
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    // The two servers name the limit differently; MySQL
                    // rejects MariaDB's variable, so try it first.
                    let mariadb =
                        format!("SET SESSION max_statement_time = {}", timeout.as_secs_f64());
                    if connection.execute(mariadb.as_str()).await.is_err() {
                        let mysql =
                            format!("SET SESSION max_execution_time = {}", timeout.as_millis());
                        connection.execute(mysql.as_str()).await?;
                    }
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        Ok(Self::with_pool(Pool::MySql(pool), config))
    }

    fn with_pool(pool: Pool, config: SqlLoaderConfig) -> Self {
        Self {
            pool,
            query: config.query,
            timeout: config.timeout,
        }
    }

    fn failure(&self, user_id: &str, error: sqlx::Error) -> LoadFailure {
        match &error {
            sqlx::Error::PoolTimedOut => LoadFailure::Unavailable(format!(
                "no database connection within {:?}: the database is down or every connection is busy",
                self.timeout / 2
            )),
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => {
                LoadFailure::Unavailable(format!("the database: {error}"))
            }
            sqlx::Error::Database(database) => {
                let timed_out = database.code().as_deref() == Some(PG_QUERY_CANCELED)
                    || database
                        .try_downcast_ref::<MySqlDatabaseError>()
                        .is_some_and(|e| MYSQL_STATEMENT_TIMEOUTS.contains(&e.number()));
                if timed_out {
                    LoadFailure::Timeout {
                        user_id: user_id.to_owned(),
                        timeout: self.timeout,
                    }
                } else {
                    LoadFailure::Query {
                        user_id: user_id.to_owned(),
                        reason: error.to_string(),
                    }
                }
            }
            _ => LoadFailure::Query {
                user_id: user_id.to_owned(),
                reason: error.to_string(),
            },
        }
    }
}

/// One column's value, before the row becomes a detail.
enum Cell {
    /// A JSON column.
    Json(Value),
    /// A text column: a string among several columns, parsed alone.
    Text(String),
    /// A number, a boolean, or NULL.
    Scalar(Value),
}

fn unsupported(name: &str, type_name: &str) -> String {
    format!(
        "column {name:?} has type {type_name}, which the loader cannot turn into JSON: cast it to text in the query"
    )
}

/// The first of the given types the column decodes as, as JSON.
macro_rules! first_decoding {
    ($row:expr, $index:expr, $($ty:ty),+) => {
        None$(.or_else(|| $row.try_get::<$ty, _>($index).ok().map(Value::from)))+
    };
}

fn pg_cell(row: &PgRow, index: usize) -> Result<Cell, String> {
    let column = &row.columns()[index];
    if row.try_get_raw(index).map_err(|e| e.to_string())?.is_null() {
        return Ok(Cell::Scalar(Value::Null));
    }
    let type_name = column.type_info().name();
    if matches!(type_name, "JSON" | "JSONB") {
        return row
            .try_get(index)
            .map(Cell::Json)
            .map_err(|e| e.to_string());
    }
    if let Ok(text) = row.try_get::<String, _>(index) {
        return Ok(Cell::Text(text));
    }
    first_decoding!(row, index, bool, i16, i32, i64, f32, f64)
        .map(Cell::Scalar)
        .ok_or_else(|| unsupported(column.name(), type_name))
}

fn mysql_cell(row: &MySqlRow, index: usize) -> Result<Cell, String> {
    let column = &row.columns()[index];
    if row.try_get_raw(index).map_err(|e| e.to_string())?.is_null() {
        return Ok(Cell::Scalar(Value::Null));
    }
    let type_name = column.type_info().name();
    match type_name {
        "JSON" => {
            return row
                .try_get(index)
                .map(Cell::Json)
                .map_err(|e| e.to_string());
        }
        // MySQL's BOOLEAN is TINYINT(1), which also decodes as a number.
        "BOOLEAN" => {
            return row
                .try_get::<bool, _>(index)
                .map(|b| Cell::Scalar(b.into()))
                .map_err(|e| e.to_string());
        }
        _ => {}
    }
    if let Ok(text) = row.try_get::<String, _>(index) {
        return Ok(Cell::Text(text));
    }
    // A `_bin` collation, MariaDB's JSON columns among them, marks text as
    // binary; UTF-8 bytes are text all the same.
    if let Ok(bytes) = row.try_get::<Vec<u8>, _>(index)
        && let Ok(text) = String::from_utf8(bytes)
    {
        return Ok(Cell::Text(text));
    }
    first_decoding!(row, index, i64, u64, f64, f32)
        .map(Cell::Scalar)
        .ok_or_else(|| unsupported(column.name(), type_name))
}

/// The detail a row gives: one column as JSON, several as an object.
fn detail(mut cells: Vec<(String, Cell)>, user_id: &str) -> Result<Option<Value>, LoadFailure> {
    let invalid = |reason: String| LoadFailure::InvalidDetail {
        user_id: user_id.to_owned(),
        reason,
    };
    if cells.len() == 1 {
        let (_, cell) = cells.remove(0);
        return match cell {
            Cell::Json(value) | Cell::Scalar(value) => Ok(Some(value)),
            Cell::Text(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| invalid(e.to_string())),
        };
    }
    let object = cells
        .into_iter()
        .map(|(name, cell)| {
            let value = match cell {
                Cell::Json(value) | Cell::Scalar(value) => value,
                Cell::Text(text) => Value::String(text),
            };
            (name, value)
        })
        .collect();
    Ok(Some(Value::Object(object)))
}

fn cells<R: sqlx::Row>(
    row: &R,
    cell: impl Fn(&R, usize) -> Result<Cell, String>,
    user_id: &str,
) -> Result<Vec<(String, Cell)>, LoadFailure> {
    row.columns()
        .iter()
        .enumerate()
        .map(|(index, column)| {
            cell(row, index)
                .map(|cell| (column.name().to_owned(), cell))
                .map_err(|reason| LoadFailure::InvalidDetail {
                    user_id: user_id.to_owned(),
                    reason,
                })
        })
        .collect()
}

#[async_trait]
impl UserLoader for SqlLoader {
    async fn load(&self, user_id: &str) -> Result<Option<Value>, LoaderError> {
        let cells = match &self.pool {
            Pool::Postgres(pool) => sqlx::query(&self.query)
                .bind(user_id)
                .fetch_optional(pool)
                .await
                .map_err(|e| self.failure(user_id, e))?
                .map(|row| cells(&row, pg_cell, user_id))
                .transpose()?,
            Pool::MySql(pool) => sqlx::query(&self.query)
                .bind(user_id)
                .fetch_optional(pool)
                .await
                .map_err(|e| self.failure(user_id, e))?
                .map(|row| cells(&row, mysql_cell, user_id))
                .transpose()?,
        };
        match cells {
            Some(cells) => Ok(detail(cells, user_id)?),
            None => Ok(None),
        }
    }

    async fn ready(&self) -> Result<(), LoaderError> {
        let unavailable = |e: sqlx::Error| LoadFailure::Unavailable(format!("the database: {e}"));
        match &self.pool {
            Pool::Postgres(pool) => pool.acquire().await.map_err(unavailable)?.ping().await,
            Pool::MySql(pool) => pool.acquire().await.map_err(unavailable)?.ping().await,
        }
        .map_err(unavailable)?;
        Ok(())
    }
}
