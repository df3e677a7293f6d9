//! The app's log: on stderr and in a file, rotated daily, never with a secret in it.
//!
//! Where the file goes ([`default_dir`]):
//! - with `--data-dir` (a second profile, every test run): `<data dir>/logs`, so each profile
//!   keeps its own log next to its data;
//! - Linux: `$XDG_STATE_HOME/<identifier>/logs` (`~/.local/state/app.clinicdesk.desktop/logs`):
//!   the XDG base directory spec keeps logs in the state directory, not with the user's data
//!   (which Tauri's `app_log_dir()` would put under `~/.local/share`);
//! - macOS: `~/Library/Logs/<identifier>`, Windows: `%LOCALAPPDATA%\<identifier>\logs`, the
//!   folders Tauri's `app_log_dir()` gives there.
//!
//! The folder is worked out before Tauri starts (Tauri's path resolver needs a running app),
//! so the file has the whole run, start-up included.
//!
//! Files are `clinic-desk.YYYY-MM-DD.log` (UTC date), one for each day the app ran; the
//! newest [`KEEP`] are kept (older ones are removed at start and when the day changes). On
//! Unix `clinic-desk.log` links to the current file.
//!
//! Every line passes through the server's [`clinic_server::logging::redact`]: session
//! tokens (the feed's hello, `Bearer`, `token` fields, long hex runs) and the value of any
//! `password` field become `[redacted]`. The app logs neither on
//! purpose; this is for what libraries print at debug and trace level.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clinic_server::logging::Redacting;
use tracing_appender::rolling::{InitError, RollingFileAppender, Rotation};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How many log files are kept (one per day the app ran).
pub const KEEP: usize = 14;

/// Log files are `<PREFIX>.<date>.<SUFFIX>`.
const PREFIX: &str = "clinic-desk";
const SUFFIX: &str = "log";

/// The folder this run writes its log file in, once the file is open.
static DIR: OnceLock<PathBuf> = OnceLock::new();

/// The folder the log file of this run is in (none if no file could be opened).
pub fn dir() -> Option<&'static Path> {
    DIR.get().map(PathBuf::as_path)
}

/// The sentence that sends the user to the details: names the folder the log is in.
pub fn see_the_log() -> String {
    see_the_log_in(dir())
}

fn see_the_log_in(dir: Option<&Path>) -> String {
    match dir {
        Some(dir) => format!("See the log in {} for details.", dir.display()),
        None => {
            "The details are in the app's error output (no log file could be written).".to_owned()
        }
    }
}

/// Where the log files go (see the module docs); `None` if the platform has no such folder
/// (no home directory).
pub fn default_dir(identifier: &str, data_dir: Option<&Path>) -> Option<PathBuf> {
    if let Some(data_dir) = data_dir {
        return Some(data_dir.join("logs"));
    }
    let base = directories::BaseDirs::new()?;
    if cfg!(target_os = "macos") {
        return Some(base.home_dir().join("Library/Logs").join(identifier));
    }
    let root = base.state_dir().unwrap_or_else(|| base.data_local_dir());
    Some(root.join(identifier).join("logs"))
}

/// The rotating log file in `dir`: daily, at most `keep` files (older ones are removed now
/// and at each rotation). Creates `dir`.
pub fn file(dir: &Path, keep: usize) -> Result<RollingFileAppender, InitError> {
    let builder = RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(PREFIX)
        .filename_suffix(SUFFIX)
        .max_log_files(keep);
    #[cfg(unix)]
    let builder = builder.latest_symlink(format!("{PREFIX}.{SUFFIX}"));
    builder.build(dir)
}

/// Logs to stderr and to a file in `dir` (when given and writable), at the level `RUST_LOG`
/// says (`info` by default). Call once, first thing.
pub fn init(dir: Option<PathBuf>) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tao=warn,wry=warn"));
    let opened = dir.map(|dir| file(&dir, KEEP).map(|file| (dir, file)));
    let (file_layer, failed) = match opened {
        Some(Ok((dir, file))) => {
            let _ = DIR.set(dir);
            (Some(file_layer(file)), None)
        }
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(filter)
        // No colours: an escape code between a field's name and its value would hide the
        // value from the redaction.
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(Redacting(io::stderr)),
        )
        .with(file_layer)
        .init();
    if let Some(e) = failed {
        tracing::warn!("no log file, logging to stderr only: {e}");
    }
}

/// The layer that writes plain lines (no colours) into `file`, without secrets.
fn file_layer<S>(file: RollingFileAppender) -> impl Layer<S> + Send + Sync
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(Redacting(file))
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use clinic_server::logging::{redact, REDACTED};

    use super::*;

    const TOKEN: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const PASSWORD: &str = "correct horse";

    /// The log files in `dir`, oldest name first.
    fn log_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file() && !p.is_symlink())
            .collect();
        files.sort();
        files
    }

    #[test]
    fn the_log_is_written_in_its_folder_and_keeps_at_most_n_files() {
        const N: usize = 3;
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        // Files of earlier days (and something else that is not a log, which stays).
        for day in 1..=5 {
            let old = logs.join(format!("{PREFIX}.2020-01-0{day}.{SUFFIX}"));
            std::fs::write(old, format!("day {day}\n")).unwrap();
        }
        std::fs::write(logs.join("notes.txt"), "not a log").unwrap();

        let subscriber =
            tracing_subscriber::Registry::default().with(file_layer(file(&logs, N).unwrap()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("the app started");
            // What a library could print at trace level: the feed's hello, a login body.
            tracing::info!(
                "sending {{\"type\":\"hello\",\"token\":\"{TOKEN}\"}} and \
                 {{\"username\":\"ines\",\"password\":\"{PASSWORD}\"}}"
            );
            tracing::info!(password = PASSWORD, "a field");
        });

        let files = log_files(&logs);
        let logs_only: Vec<&PathBuf> = files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == SUFFIX))
            .collect();
        assert!(logs_only.len() <= N, "{files:?}");
        assert!(files.contains(&logs.join("notes.txt")), "{files:?}");
        let today = logs_only
            .iter()
            .find(|p| !p.to_string_lossy().contains("2020-"))
            .expect("today's file");
        let written = std::fs::read_to_string(today).unwrap();
        assert!(written.contains("the app started"), "{written}");
        assert!(!written.contains(TOKEN), "{written}");
        assert!(!written.contains("correct"), "{written}");
        assert_eq!(written.matches(REDACTED).count(), 3, "{written}");
        assert!(
            !written.contains('\u{1b}'),
            "no colours in the file: {written}"
        );
        #[cfg(unix)]
        assert_eq!(
            std::fs::read_to_string(logs.join("clinic-desk.log")).unwrap(),
            written,
            "clinic-desk.log is the current file"
        );
    }

    #[test]
    fn passwords_and_tokens_are_redacted() {
        let cases = [
            (
                format!(r#"{{"username":"ines","password":"{PASSWORD}"}}"#),
                r#"{"username":"ines","password":"[redacted]"}"#.to_owned(),
            ),
            (
                format!(r#"request={{\"password\": \"{PASSWORD}\", \"u\":1}}"#),
                r#"request={\"password\": \"[redacted]\", \"u\":1}"#.to_owned(),
            ),
            (
                "Login { username: \"ines\", password: \"a \\\"quoted\\\" one\" }".to_owned(),
                "Login { username: \"ines\", password: \"[redacted]\" }".to_owned(),
            ),
            (
                "login password=hunter2 next=1".to_owned(),
                "login password=[redacted] next=1".to_owned(),
            ),
            (
                format!("new_password: {TOKEN}"),
                "new_password: [redacted]".to_owned(),
            ),
            (
                format!("hello token={TOKEN} Password=x"),
                "hello token=[redacted] Password=[redacted]".to_owned(),
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(redact(&line), expected, "{line}");
        }
        for line in [
            "the password was wrong",
            "passwords: 3",
            "a password:",
            "password=\"\"",
            "",
        ] {
            assert!(matches!(redact(line), Cow::Borrowed(_)), "{line}");
        }
    }

    #[test]
    fn the_log_folder_is_the_profiles_or_the_platforms() {
        let data = Path::new("/tmp/profile");
        assert_eq!(
            default_dir("app.clinicdesk.desktop", Some(data)),
            Some(data.join("logs"))
        );
        #[cfg(target_os = "linux")]
        if std::env::var_os("XDG_STATE_HOME").is_none() {
            let dir = default_dir("app.clinicdesk.desktop", None).expect("a home directory");
            assert!(
                dir.ends_with(".local/state/app.clinicdesk.desktop/logs"),
                "{dir:?}"
            );
        }
    }

    #[test]
    fn the_user_is_sent_to_the_folder_the_log_is_in() {
        let folder = tempfile::tempdir().unwrap();
        let logs = folder.path().join("logs");
        let _file = file(&logs, KEEP).unwrap();
        assert!(logs.is_dir());
        let said = see_the_log_in(Some(&logs));
        assert!(said.contains(&logs.display().to_string()), "{said}");
        // Without a log file, no folder is named.
        assert!(!see_the_log_in(None).contains('/'));
    }
}
