//! The PostgreSQL and MariaDB servers of this machine (see
//! scripts/prereqs.sh), and a users table of its own per SQL test.

use std::sync::atomic::{AtomicUsize, Ordering};

use dsession::loader::{SqlLoader, SqlLoaderConfig};

pub fn postgres_url() -> String {
    std::env::var("DSESSION_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn mysql_url() -> String {
    std::env::var("DSESSION_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    Postgres,
    MySql,
}

/// A users table of its own in the test database, dropped on drop:
/// `alice` has every column set, `nobody` has no row, `user0`… `userN`
/// have a detail each.
pub struct UsersTable {
    database: Database,
    name: String,
}

impl UsersTable {
    pub async fn create(database: Database, extra_users: usize) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = super::since_epoch().subsec_nanos();
        let name = format!(
            "dsession_users_{}_{nanos}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let table = Self { database, name };
        let name = &table.name;
        let mut statements = match database {
            Database::Postgres => vec![
                format!(
                    "CREATE TABLE {name} (id TEXT PRIMARY KEY, detail JSONB, name TEXT, age INT, admin BOOLEAN, note TEXT)"
                ),
                format!(
                    r#"INSERT INTO {name} VALUES ('alice', '{{"plan": "pro"}}', 'Alice', 30, TRUE, '{{not json')"#
                ),
            ],
            Database::MySql => vec![
                format!(
                    "CREATE TABLE {name} (id VARCHAR(64) PRIMARY KEY, detail JSON, name VARCHAR(64), age INT, admin BOOLEAN, note TEXT)"
                ),
                format!(
                    r#"INSERT INTO {name} VALUES ('alice', '{{"plan": "pro"}}', 'Alice', 30, TRUE, '{{not json')"#
                ),
            ],
        };
        for user in 0..extra_users {
            statements.push(format!(
                r#"INSERT INTO {name} (id, detail) VALUES ('user{user}', '{{"plan": "free"}}')"#
            ));
        }
        run(database, &statements).await;
        table
    }

    /// A loader running `query`, in which `{table}` is this table.
    pub fn loader(&self, query: &str) -> SqlLoader {
        let query = query.replace("{table}", &self.name);
        match self.database {
            Database::Postgres => {
                SqlLoader::postgres(SqlLoaderConfig::new(postgres_url(), query)).unwrap()
            }
            Database::MySql => SqlLoader::mysql(SqlLoaderConfig::new(mysql_url(), query)).unwrap(),
        }
    }

    /// The user-id parameter as the database spells it.
    pub fn parameter(&self) -> &'static str {
        match self.database {
            Database::Postgres => "$1",
            Database::MySql => "?",
        }
    }
}

/// Runs SQL statements on the test database.
async fn run(database: Database, statements: &[String]) {
    match database {
        Database::Postgres => {
            let pool = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
            for statement in statements {
                sqlx::query(statement).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
        Database::MySql => {
            let pool = sqlx::MySqlPool::connect(&mysql_url()).await.unwrap();
            for statement in statements {
                sqlx::query(statement).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
    }
}

impl Drop for UsersTable {
    fn drop(&mut self) {
        let database = self.database;
        let statement = format!("DROP TABLE IF EXISTS {}", self.name);
        // Drop cannot await, and may run inside a runtime: clean up on a
        // thread with a runtime of its own.
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(run(database, &[statement]));
        })
        .join()
        .unwrap();
    }
}
