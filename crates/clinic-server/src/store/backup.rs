//! A consistent copy of a live SQLite store, marked as a restore point (see the store's
//! module docs, "Backups and the seqs they skip"). A PostgreSQL store is backed up with
//! PostgreSQL's own tools (`pg_dump`); restoring one is not this module's.

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

use super::RESTORE_SKIP;
use crate::error::ServerError;

/// Copies the database at `db` (which a server may be serving) into a new file `to`,
/// consistent at one commit, and marks the copy as a restore point: its head moves on by
/// [`RESTORE_SKIP`], so that clients of the original whose cursors are past the copy's
/// head are told to resync by a server on the copy, even after it has made changes of its
/// own. Refuses to overwrite an existing file. Returns the copy's head as it was in the
/// original (every change up to it is in the copy).
pub(crate) async fn backup(db: &Path, to: &Path) -> Result<u64, ServerError> {
    if to.exists() {
        return Err(ServerError::Backup(format!(
            "{} already exists; a backup never overwrites a file",
            to.display()
        )));
    }
    if !db.is_file() {
        return Err(ServerError::Backup(format!(
            "there is no database at {}",
            db.display()
        )));
    }
    let name = to
        .file_name()
        .ok_or_else(|| ServerError::Backup(format!("{} is not a file name", to.display())))?;
    let dir = match to.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    // Made under a name of our own, marked, synced, and only then given its name: a backup
    // that stops half-way leaves no file that looks like a backup.
    let partial = dir.join(format!(".{}.partial", name.to_string_lossy()));
    let _ = std::fs::remove_file(&partial);
    let made = copy_and_mark(db, &partial).await;
    let named = made.and_then(|head| {
        std::fs::File::open(&partial)?.sync_all()?;
        // A hard link never replaces an existing file (unlike a rename): a file made at
        // `to` meanwhile is left alone and the backup fails.
        std::fs::hard_link(&partial, to).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                ServerError::Backup(format!(
                    "{} already exists; a backup never overwrites a file",
                    to.display()
                ))
            } else {
                e.into()
            }
        })?;
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(head)
    });
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut leftover = partial.clone().into_os_string();
        leftover.push(suffix);
        let _ = std::fs::remove_file(leftover);
    }
    named
}

async fn copy_and_mark(db: &Path, copy: &Path) -> Result<u64, ServerError> {
    // A connection of its own, next to the server's: VACUUM INTO reads one consistent
    // snapshot (a read transaction; WAL lets the server go on writing meanwhile).
    let mut source = SqliteConnectOptions::new()
        .filename(db)
        .busy_timeout(std::time::Duration::from_secs(30))
        .connect()
        .await?;
    let is_clinic: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'skipped'")
            .fetch_optional(&mut source)
            .await?;
    if is_clinic.is_none() {
        return Err(ServerError::Backup(format!(
            "{} is not a clinic database of this version (start the server on it once first)",
            db.display()
        )));
    }
    let path = copy
        .to_str()
        .ok_or_else(|| ServerError::Backup(format!("{} is not valid UTF-8", copy.display())))?;
    sqlx::query("VACUUM INTO ?")
        .bind(path)
        .execute(&mut source)
        .await?;
    source.close().await?;

    // A rollback journal, not WAL, for this one write: nothing is left beside the file
    // (the server turns WAL on again when it opens it).
    let mut copied = SqliteConnectOptions::new()
        .filename(copy)
        .journal_mode(SqliteJournalMode::Delete)
        .synchronous(SqliteSynchronous::Full)
        .connect()
        .await?;
    let mut tx = copied.begin().await?;
    let head: i64 = sqlx::query_scalar("SELECT seq FROM head")
        .fetch_one(&mut *tx)
        .await?;
    let resume = head
        .checked_add(i64::try_from(RESTORE_SKIP).unwrap_or(i64::MAX))
        .ok_or(ServerError::Invariant("seq overflow"))?;
    sqlx::query("INSERT INTO skipped (after, resume) VALUES (?, ?)")
        .bind(head)
        .bind(resume)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE head SET seq = ?")
        .bind(resume)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    copied.close().await?;
    Ok(u64::try_from(head).unwrap_or(0))
}
