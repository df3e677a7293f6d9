//! One writer per database: the lock a [`Store`](crate::store::Store) holds on
//! `<db>.lock` for as long as it is open.
//!
//! The store judges every write against what it holds in memory, so a second process
//! writing the same file (a second server, or `clinic-server staff add` while a server
//! runs) would go unseen by the first, and their seqs would collide. SQLite's own locks
//! only serialise transactions; they say nothing of who else keeps state. So opening a
//! store takes an exclusive `flock` on a file next to the database, without waiting: a
//! second opener is refused at once with a sentence saying why. The kernel drops the
//! lock when its process ends, however it ends (SIGKILL too), so a crash leaves nothing to
//! clean up.
//!
//! Inside one process the lock is shared: an embedded server restarted on the same file
//! ([`Embedded::restart`](crate::Embedded::restart)) opens its new store before the old
//! one is dropped, and is the same writer in every sense that matters here.
//!
//! Not on Windows (no `flock`): there, nothing stops a second process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use crate::error::ServerError;

/// The lock on one database, released when the last holder in this process drops it.
#[derive(Debug)]
pub(crate) struct DbLock {
    /// Holding the open file is holding the lock.
    _file: std::fs::File,
}

/// The locks this process holds, by the lock file's canonical path.
fn held() -> &'static Mutex<HashMap<PathBuf, Weak<DbLock>>> {
    static HELD: OnceLock<Mutex<HashMap<PathBuf, Weak<DbLock>>>> = OnceLock::new();
    HELD.get_or_init(Mutex::default)
}

/// `<db>.lock`, next to the database.
pub(crate) fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl DbLock {
    /// Takes the lock of the database at `db`, or shares it if this process holds it.
    /// Refused (never waited for) when another process holds it.
    pub(crate) fn take(db: &Path) -> Result<Arc<DbLock>, ServerError> {
        let path = lock_path(db);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ServerError::Locked(format!("cannot open {}: {e}", path.display())))?;
        // The key must name the file, whatever path led to it.
        let key = path.canonicalize().unwrap_or(path);
        let mut held = held().lock().unwrap_or_else(PoisonError::into_inner);
        held.retain(|_, lock| lock.strong_count() > 0);
        if let Some(lock) = held.get(&key).and_then(Weak::upgrade) {
            return Ok(lock);
        }
        #[cfg(unix)]
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| {
                if e == rustix::io::Errno::WOULDBLOCK {
                    ServerError::Locked(format!(
                        "another process has {} open (a clinic-server serving it, or a \
                         `clinic-server staff add` writing to it)",
                        db.display()
                    ))
                } else {
                    ServerError::Locked(format!("cannot lock {}: {e}", key.display()))
                }
            },
        )?;
        let lock = Arc::new(DbLock { _file: file });
        held.insert(key, Arc::downgrade(&lock));
        Ok(lock)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn one_process_shares_its_lock_and_another_is_refused_until_it_lets_go() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = dir.path().join("clinic.db");
        let first = DbLock::take(&db).expect("the lock");
        let again = DbLock::take(&dir.path().join(".").join("clinic.db")).expect("shared");
        assert!(
            Arc::ptr_eq(&first, &again),
            "one lock per file in a process"
        );

        // Another open file description stands for another process: flock locks belong to
        // the open file, not to the process.
        let other = std::fs::OpenOptions::new()
            .write(true)
            .open(lock_path(&db))
            .expect("the lock file");
        let refused =
            rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockExclusive);
        assert_eq!(refused, Err(rustix::io::Errno::WOULDBLOCK));

        drop((first, again));
        rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .expect("free once the last holder is gone");
        match DbLock::take(&db) {
            Err(ServerError::Locked(why)) => assert!(why.contains("another process"), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
