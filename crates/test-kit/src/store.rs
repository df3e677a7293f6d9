//! Where a test's clinic lives: the one place that picks the store, so that the same test
//! bodies run on SQLite and on PostgreSQL.

use std::path::Path;
use std::sync::Arc;

use clinic_server::{Config, Database};
use tempfile::TempDir;

use crate::postgres::{self, PgCluster, TestDatabase};

/// A test's store and a temporary directory beside it (for a SQLite file, a CA file, a
/// log...): a SQLite file in that directory, or a fresh PostgreSQL database of its own when
/// `CLINIC_TEST_POSTGRES` is set ([`TestStore::fresh`]). Dropping it removes both: the
/// directory, and the database once no store [`TestStore::beside`] it is left.
#[derive(Debug)]
pub struct TestStore {
    db: Database,
    /// Shared by the stores beside this one: the database goes with the last of them.
    postgres: Option<Arc<TestDatabase>>,
    dir: TempDir,
}

impl TestStore {
    /// The suite's store: a fresh PostgreSQL database when `CLINIC_TEST_POSTGRES` is set,
    /// else a SQLite file (`clinic.db`) in a new temporary directory.
    pub async fn fresh() -> TestStore {
        match postgres::base_url() {
            Some(base) => TestStore::postgres(&base).await,
            None => TestStore::sqlite(),
        }
    }

    /// A SQLite file, whatever the environment: for tests of the file itself (its backup,
    /// its bytes, its lock, the console commands on a stopped server's file).
    pub fn sqlite() -> TestStore {
        let dir = tempfile::tempdir().expect("a temporary directory");
        TestStore {
            db: Database::Sqlite(dir.path().join("clinic.db")),
            postgres: None,
            dir,
        }
    }

    /// A fresh database on the PostgreSQL server `base` addresses (see
    /// [`TestDatabase::create`]).
    pub async fn postgres(base: &str) -> TestStore {
        let db = TestDatabase::create(base).await;
        TestStore {
            db: Database::Postgres(db.url().to_owned()),
            postgres: Some(Arc::new(db)),
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// A fresh PostgreSQL database whatever the environment: on `CLINIC_TEST_POSTGRES`'s
    /// server, or, when that is unset, on a throwaway cluster of the test's own (returned:
    /// keep it in a variable declared before the store and the servers, so that it outlives
    /// them). For tests of several instances, which must never pass without PostgreSQL.
    pub async fn postgres_anywhere() -> (Option<PgCluster>, TestStore) {
        match postgres::base_url() {
            Some(base) => (None, TestStore::postgres(&base).await),
            None => {
                let cluster = PgCluster::start().await;
                let store = TestStore::postgres(&cluster.url()).await;
                (Some(cluster), store)
            }
        }
    }

    /// The same database for another server instance, with a directory of its own. Only
    /// PostgreSQL takes several instances: a SQLite file is one process's to write.
    pub fn beside(&self) -> TestStore {
        assert!(
            self.postgres.is_some(),
            "a second server instance needs PostgreSQL: this store is the SQLite file {} \
             (set {} or use a PgCluster)",
            self.db.display(),
            postgres::ENV
        );
        TestStore {
            db: self.db.clone(),
            postgres: self.postgres.clone(),
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.db, Database::Postgres(_))
    }

    /// The SQLite file; panics, saying why, on PostgreSQL.
    pub fn db_path(&self) -> &Path {
        self.db.sqlite_path().unwrap_or_else(|| {
            panic!(
                "this test's store is PostgreSQL ({}), which has no database file: a test of \
                 the SQLite file starts on TestStore::sqlite / TestServer::start_sqlite",
                self.db.display()
            )
        })
    }

    /// What the server binary's `--db` takes: the file path or the `postgres://` address.
    pub fn db_arg(&self) -> String {
        match &self.db {
            Database::Sqlite(path) => path.display().to_string(),
            Database::Postgres(url) => url.clone(),
        }
    }

    /// The server's default settings on this store.
    pub fn config(&self) -> Config {
        Config::on(self.db.clone())
    }

    /// The temporary directory, for the test's other files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, PgConnection};

    use super::*;
    use crate::postgres::PgCluster;

    #[test]
    fn a_sqlite_store_is_a_file_in_its_directory() {
        let store = TestStore::sqlite();
        assert!(!store.is_postgres());
        assert_eq!(store.db_path(), store.dir().join("clinic.db"));
        assert_eq!(
            store.db_arg(),
            store.dir().join("clinic.db").display().to_string()
        );
        assert_eq!(
            store.config().db,
            Database::Sqlite(store.dir().join("clinic.db"))
        );
    }

    #[test]
    #[should_panic(expected = "a second server instance needs PostgreSQL")]
    fn no_second_instance_beside_a_sqlite_file() {
        let _ = TestStore::sqlite().beside();
    }

    /// The database stays while any store beside it does, and goes with the last one.
    #[tokio::test]
    async fn a_postgres_database_goes_with_the_last_store_on_it() {
        let cluster = PgCluster::start().await;
        let first = TestStore::postgres(&cluster.url()).await;
        assert!(first.is_postgres());
        let url = first.db_arg();
        assert!(url.starts_with("postgres://"), "{url}");
        let second = first.beside();
        assert_eq!(second.database(), first.database());
        assert_ne!(second.dir(), first.dir());
        drop(first);
        let conn = PgConnection::connect(&url).await.expect("still there");
        let _ = conn.close().await;
        drop(second);
        let gone = PgConnection::connect(&url).await;
        assert!(gone.is_err(), "the database was dropped");
    }

    #[test]
    #[should_panic(expected = "has no database file")]
    fn a_postgres_store_has_no_file_to_give() {
        let store = TestStore {
            db: Database::Postgres("postgres://h/db".into()),
            postgres: None,
            dir: tempfile::tempdir().expect("a temporary directory"),
        };
        let _ = store.db_path();
    }
}
