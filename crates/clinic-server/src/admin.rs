//! The server's console: `clinic-server staff add` ([`add_staff`]), whether the server
//! runs or not.
//!
//! A running server judges every write against what it holds in memory, so nothing may
//! write its database behind its back. It therefore listens on a local Unix socket next to
//! its database, `<db>.admin.sock` (mode 0600: only the server's own user, and root, may
//! connect; made under a temporary name and renamed into place, so it is never open to
//! anyone for an instant), and removes it when it stops. The command connects there and
//! the server makes the account through its one write path, as if an administrator had
//! asked over HTTP: the record goes into the change log and reaches every feed at once.
//! When nothing answers there (no server, or one that was killed and left its socket
//! behind), the command opens the database itself, through the same store and write path,
//! under the database's lock (`lock.rs`): were a server to start meanwhile, one of the two
//! would be refused, never both write.
//!
//! The socket speaks one JSON line each way: a request ([`Request`]), then its answer
//! ([`Answer`]). What a connection may cost is bounded: a few connections at once, a
//! line of at most [`MAX_LINE`] bytes read within [`READ_WITHIN`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use clinic_protocol::rules::Rejection;
use clinic_protocol::{ErrorCode, NewStaff, Role, Staff};
use serde::{Deserialize, Serialize};

use crate::{AppState, Config, Database, ServerError};

/// The longest request line the socket reads (a new account is a few hundred bytes).
#[cfg(unix)]
const MAX_LINE: u64 = 16 * 1024;
/// How long a connection has to send its request.
#[cfg(unix)]
const READ_WITHIN: Duration = Duration::from_secs(10);
/// How long the command waits for the server's answer (a password hash, one commit).
#[cfg(unix)]
const ANSWER_WITHIN: Duration = Duration::from_secs(30);
/// Connections served at once; more are refused (the console is one person).
#[cfg(unix)]
const AT_ONCE: usize = 4;

/// `<db>.admin.sock`, next to the database.
pub fn socket_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".admin.sock");
    PathBuf::from(name)
}

/// A new staff account, as `clinic-server staff add` asks for it.
#[derive(Debug, Clone)]
pub struct StaffAdd {
    pub username: String,
    pub display_name: String,
    pub roles: Vec<Role>,
    /// The password (from `--password-stdin`); `None` makes a one-time password, which
    /// its owner must change at their first sign-in.
    pub password: Option<String>,
}

/// The account made.
#[derive(Debug, Clone)]
pub struct StaffAdded {
    pub staff: Staff,
    /// The one-time password made for it, when none was given: shown once, kept nowhere.
    pub one_time_password: Option<String>,
    /// Whether a running server made it (else the command wrote the database itself).
    pub through_server: bool,
}

/// What the command sends on the socket.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Request {
    AddStaff {
        username: String,
        display_name: String,
        roles: Vec<Role>,
        password: Option<String>,
    },
}

/// What the server answers on the socket.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case", deny_unknown_fields)]
enum Answer {
    Added {
        staff: Staff,
        one_time_password: Option<String>,
    },
    Refused {
        code: ErrorCode,
        message: String,
    },
}

impl Answer {
    fn of(made: Result<(Staff, Option<String>), ServerError>) -> Answer {
        match made {
            Ok((staff, one_time_password)) => Answer::Added {
                staff,
                one_time_password,
            },
            Err(e) => {
                let refused = refusal(e);
                Answer::Refused {
                    code: refused.code,
                    message: refused.message,
                }
            }
        }
    }
}

/// What a person at the console is told of a failure: the refusal's code and sentence, or
/// `internal` (and the log line) for anything else.
fn refusal(e: ServerError) -> Rejection {
    match e {
        ServerError::Refused(r) => r,
        other => {
            tracing::error!("adding a staff account failed: {other}");
            Rejection::new(
                ErrorCode::Internal,
                format!("The server could not add the account: {other}"),
            )
        }
    }
}

/// Makes a staff account in the database `db`. A SQLite file: through the server serving
/// it if one answers on its socket, else by opening the file (creating it if need be). A
/// PostgreSQL database: by writing it, as one more instance would, whether servers run on
/// it or not. A refusal (a taken username, a short password...) is
/// [`ServerError::Refused`] with its stable code.
pub async fn add_staff(db: &Database, add: StaffAdd) -> Result<StaffAdded, ServerError> {
    if let Database::Sqlite(path) = db {
        #[cfg(unix)]
        if let Some(added) = through_server(path, &add).await? {
            return Ok(added);
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
    }
    let state = AppState::open(Config::on(db.clone())).await?;
    let new = NewStaff {
        username: add.username,
        display_name: add.display_name,
        roles: add.roles,
    };
    let (staff, one_time_password) = state
        .add_account(new, add.password, None)
        .await
        .map_err(|e| ServerError::Refused(refusal(e)))?;
    Ok(StaffAdded {
        staff,
        one_time_password,
        through_server: false,
    })
}

/// Asks the server serving `db`, if one listens on its socket; `None` if none does.
#[cfg(unix)]
async fn through_server(db: &Path, add: &StaffAdd) -> Result<Option<StaffAdded>, ServerError> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    let path = socket_path(db);
    let mut stream = match tokio::net::UnixStream::connect(&path).await {
        Ok(stream) => stream,
        // No server, or a socket a killed one left behind.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => {
            return Err(ServerError::Locked(format!(
                "cannot reach the server on {} ({e}); run the command as the user the \
                 server runs as",
                path.display()
            )))
        }
    };
    let request = Request::AddStaff {
        username: add.username.clone(),
        display_name: add.display_name.clone(),
        roles: add.roles.clone(),
        password: add.password.clone(),
    };
    let mut line = serde_json::to_string(&request)?;
    line.push('\n');
    let asked = async {
        stream.write_all(line.as_bytes()).await?;
        let mut answer = String::new();
        BufReader::new(&mut stream)
            .take(MAX_LINE)
            .read_line(&mut answer)
            .await?;
        Ok::<String, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(ANSWER_WITHIN, asked)
        .await
        .map_err(|_| ServerError::Invariant("the server did not answer on its admin socket"))??;
    match serde_json::from_str(&answer)? {
        Answer::Added {
            staff,
            one_time_password,
        } => Ok(Some(StaffAdded {
            staff,
            one_time_password,
            through_server: true,
        })),
        Answer::Refused { code, message } => {
            Err(ServerError::Refused(Rejection::new(code, message)))
        }
    }
}

/// The socket a server listens on, removed by [`Listening::close`].
#[cfg(unix)]
#[derive(Debug)]
pub(crate) struct Listening {
    path: PathBuf,
    /// The socket file's inode: only ours is removed.
    inode: u64,
    task: tokio::task::JoinHandle<()>,
}

#[cfg(unix)]
impl Listening {
    /// Listens on `state`'s database's socket until the server shuts down. A socket that
    /// cannot be made is logged and done without: the server serves all the same, and the
    /// command then finds the database locked and says so.
    pub(crate) fn open(state: &AppState) -> Option<Listening> {
        // On PostgreSQL the console writes the shared database itself, as instances do.
        let path = socket_path(state.config.db.sqlite_path()?);
        match bind(&path) {
            Ok((listener, inode)) => {
                let task = tokio::spawn(accept(listener, state.clone()));
                Some(Listening { path, inode, task })
            }
            Err(e) => {
                tracing::warn!(
                    "no admin socket at {} ({e}): `clinic-server staff add` cannot reach \
                     this server",
                    path.display()
                );
                None
            }
        }
    }

    /// Waits for the accept loop to end (it ends when the server shuts down) and removes
    /// the socket, if it is still ours.
    pub(crate) async fn close(self) {
        use std::os::unix::fs::MetadataExt;
        let _ = self.task.await;
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds the socket under a temporary name, makes it 0600, and renames it into place (over
/// a socket a killed server left behind: the database's lock says none other is serving).
#[cfg(unix)]
fn bind(path: &Path) -> std::io::Result<(tokio::net::UnixListener, u64)> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.new", std::process::id()));
    let temporary = PathBuf::from(temporary);
    let _ = std::fs::remove_file(&temporary);
    let listener = tokio::net::UnixListener::bind(&temporary)?;
    let placed = std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&temporary, path))
        .and_then(|()| std::fs::symlink_metadata(path));
    match placed {
        Ok(meta) => Ok((listener, meta.ino())),
        Err(e) => {
            let _ = std::fs::remove_file(&temporary);
            Err(e)
        }
    }
}

#[cfg(unix)]
async fn accept(listener: tokio::net::UnixListener, state: AppState) {
    let mut stopping = state.shutdown.subscribe();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: try again in a moment rather than
                    // spin on the same error.
                    tracing::warn!("admin socket: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            // A unit output: the watch's read guard must not live across an await.
            () = async { let _ = stopping.wait_for(|stopping| *stopping).await; } => return,
        };
        // Beyond a few at once, a connection is closed unanswered.
        let Ok(slot) = std::sync::Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = serve(stream, &state).await {
                tracing::warn!("admin socket: {e}");
            }
        });
    }
}

/// Answers one request.
#[cfg(unix)]
async fn serve(mut stream: tokio::net::UnixStream, state: &AppState) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let mut line = String::new();
    let mut reader = BufReader::new(&mut stream).take(MAX_LINE);
    match tokio::time::timeout(READ_WITHIN, reader.read_line(&mut line)).await {
        // Nothing within the time allowed: nobody to answer.
        Err(_) => return Ok(()),
        Ok(read) => read?,
    };
    let answer = match serde_json::from_str::<Request>(&line) {
        Err(e) => Answer::Refused {
            code: ErrorCode::Malformed,
            message: format!("Not a request: {e}"),
        },
        Ok(Request::AddStaff {
            username,
            display_name,
            roles,
            password,
        }) => {
            let new = NewStaff {
                username,
                display_name,
                roles,
            };
            let made = state.add_account(new, password, None).await;
            if let Ok((staff, _)) = &made {
                tracing::info!(
                    "staff account {} added at the console (admin socket)",
                    staff.username
                );
            }
            Answer::of(made)
        }
    };
    let mut text = serde_json::to_string(&answer).map_err(std::io::Error::other)?;
    text.push('\n');
    stream.write_all(text.as_bytes()).await
}
