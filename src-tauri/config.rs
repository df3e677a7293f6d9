//! Where the app connects and keeps its data: command line, environment, config file.
//!
//! Precedence: `--server` / `CLINIC_DESK_SERVER`, then `server` in `<config dir>/config.json`,
//! then the server last logged in to, then `http://127.0.0.1:7420` (a local clinic server).
//!
//! A clinic server may have several addresses (instances sharing one database): `--server`
//! repeated (or `CLINIC_DESK_SERVER` with commas), `"server": ["https://a", "https://b"]`
//! in the config file, or the addresses separated by commas in the login form. The engine
//! starts with the first and fails over to the next when one stops answering. Within the
//! app the list travels as that text ([`Settings::server`]); [`clinic_sync::server_list`]
//! reads it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;
use clap::Parser;
use serde::{Deserialize, Serialize};

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7420";

#[derive(Debug, Clone, Parser)]
#[command(
    name = "clinic-desk",
    about = "Clinic Desk: every dashboard in sync, all day"
)]
pub struct Args {
    /// The clinic server to use, e.g. https://clinic.example.org; repeat it (or separate
    /// addresses with commas) for a server with several instances: the first is preferred.
    #[arg(long, env = "CLINIC_DESK_SERVER", value_delimiter = ',')]
    pub server: Vec<String>,
    /// Start an embedded clinic server with a demo clinic, log in as its owner and open
    /// several dashboards side by side.
    #[arg(long)]
    pub demo: bool,
    /// Where to keep the local cache, the session and the window layout
    /// (default: the platform's data directory).
    #[arg(long, env = "CLINIC_DESK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep latency probes in every page (bounded), for the benchmarks and end-to-end
    /// tests; off in normal use.
    #[arg(long, env = "CLINIC_DESK_MEASURE")]
    pub measure: bool,
    /// A clinic CA certificate (PEM) to trust besides the system's, for a clinic server
    /// whose https:// certificate the clinic signs itself.
    #[arg(long, env = "CLINIC_DESK_CA_FILE", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
}

/// `--ca-file` of this run, set once with the [`Settings`]: every engine the app starts
/// trusts it (`session::config`).
static CA_FILE: OnceLock<Option<PathBuf>> = OnceLock::new();

/// The clinic CA file of this run, if one was given.
pub fn ca_file() -> Option<PathBuf> {
    CA_FILE.get().cloned().flatten()
}

/// The optional config file, and what the app remembers between runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Remembered {
    pub server: Option<Servers>,
    pub username: Option<String>,
}

/// A clinic server's addresses in a settings file: one string (as every file written
/// before there could be several holds, and as it is written back when there is one) or a
/// list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "OneOrMany", into = "OneOrMany")]
pub struct Servers(pub Vec<String>);

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl From<OneOrMany> for Servers {
    fn from(value: OneOrMany) -> Servers {
        match value {
            // A string may hold several, separated as in the login form.
            OneOrMany::One(text) => Servers(clinic_sync::server_list(&text)),
            OneOrMany::Many(list) => Servers(
                list.iter()
                    .flat_map(|s| clinic_sync::server_list(s))
                    .collect(),
            ),
        }
    }
}

impl From<Servers> for OneOrMany {
    fn from(servers: Servers) -> OneOrMany {
        match <[String; 1]>::try_from(servers.0) {
            Ok([one]) => OneOrMany::One(one),
            Err(many) => OneOrMany::Many(many),
        }
    }
}

impl Servers {
    /// The addresses typed in the login form (or any text of them).
    pub fn parse(text: &str) -> Servers {
        Servers(clinic_sync::server_list(text))
    }

    /// As the login form shows them: separated by commas.
    pub fn text(&self) -> String {
        self.0.join(", ")
    }

    /// `None` for a list with no address (an empty string in a file): not a setting.
    fn given(self) -> Option<Servers> {
        (!self.0.is_empty()).then_some(self)
    }
}

/// A warning in words if any of the addresses in `text` would carry secrets in clear text
/// across a network (see [`clinic_sync::insecure_address_warning`]).
pub fn server_warning(text: &str) -> Option<String> {
    clinic_sync::server_list(text)
        .iter()
        .find_map(|address| clinic_sync::insecure_address_warning(address))
}

impl Remembered {
    pub fn load(path: &Path) -> Remembered {
        std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        write_atomically(path, &serde_json::to_vec_pretty(self)?)
    }
}

/// Writes a small file so that a crash never leaves half of it behind.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

/// The resolved settings of this run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub args: Args,
    pub data_dir: PathBuf,
    pub config_file: PathBuf,
    pub remembered_file: PathBuf,
}

impl Settings {
    /// Also makes `args.ca_file` the run's [`ca_file`] (the first settings made win).
    pub fn new(args: Args, default_data_dir: PathBuf, config_dir: PathBuf) -> Settings {
        let _ = CA_FILE.set(args.ca_file.clone());
        let data_dir = args.data_dir.clone().unwrap_or(default_data_dir);
        Settings {
            remembered_file: data_dir.join("last-login.json"),
            config_file: config_dir.join("config.json"),
            data_dir,
            args,
        }
    }

    pub fn remembered(&self) -> Remembered {
        Remembered::load(&self.remembered_file)
    }

    /// The server to offer on the login form and to resume a session with: its
    /// addresses, separated by commas when there are several.
    pub fn server(&self) -> String {
        Servers(self.args.server.clone())
            .given()
            .or_else(|| {
                Remembered::load(&self.config_file)
                    .server
                    .and_then(Servers::given)
            })
            .or_else(|| self.remembered().server.and_then(Servers::given))
            .map_or_else(|| DEFAULT_SERVER.to_owned(), |s| s.text())
    }
}

/// The single-instance id: the app's identifier, plus a digest of the data directory when
/// one is given, so that each profile is its own instance.
pub fn instance_id(identifier: &str, data_dir: Option<&Path>) -> String {
    match data_dir {
        None => identifier.to_owned(),
        Some(dir) => {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            dir.hash(&mut hasher);
            format!("{identifier}.p{:016x}", hasher.finish())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str], config_file: &str) -> (Settings, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), config_file).unwrap();
        let args = Args::try_parse_from(std::iter::once("clinic-desk").chain(args.iter().copied()))
            .unwrap();
        let settings = Settings::new(args, dir.path().join("data"), dir.path().to_path_buf());
        (settings, dir)
    }

    #[test]
    fn server_may_be_repeated_on_the_command_line() {
        let (s, _dir) = settings(
            &["--server", "https://a:7420", "--server", "https://b:7420"],
            "{}",
        );
        assert_eq!(s.server(), "https://a:7420, https://b:7420");
        let (s, _dir) = settings(&["--server", "https://a:7420,https://b:7420"], "{}");
        assert_eq!(s.server(), "https://a:7420, https://b:7420");
    }

    #[test]
    fn a_settings_file_holds_one_address_or_a_list() {
        let (s, _dir) = settings(&[], r#"{"server": "https://a:7420"}"#);
        assert_eq!(s.server(), "https://a:7420");
        let (s, _dir) = settings(&[], r#"{"server": ["https://a:7420", "https://b:7420"]}"#);
        assert_eq!(s.server(), "https://a:7420, https://b:7420");
        let (s, _dir) = settings(
            &["--server", "https://c:7420"],
            r#"{"server": ["https://a:7420"]}"#,
        );
        assert_eq!(s.server(), "https://c:7420", "the command line wins");
        let (s, _dir) = settings(&[], r#"{"server": ""}"#);
        assert_eq!(s.server(), DEFAULT_SERVER, "an empty setting is no setting");
    }

    #[test]
    fn one_address_is_written_back_as_a_string_and_several_as_a_list() {
        let one = Remembered {
            server: Some(Servers::parse("https://a:7420")),
            username: None,
        };
        assert_eq!(
            serde_json::to_value(&one).unwrap()["server"],
            serde_json::json!("https://a:7420")
        );
        let two = Remembered {
            server: Some(Servers::parse("https://a:7420, https://b:7420")),
            username: None,
        };
        let json = serde_json::to_string(&two).unwrap();
        assert!(
            json.contains(r#"["https://a:7420","https://b:7420"]"#),
            "{json}"
        );
        let back: Remembered = serde_json::from_str(&json).unwrap();
        assert_eq!(back.server, two.server);
    }

    #[test]
    fn the_warning_names_any_clear_text_address_of_the_list() {
        assert!(server_warning("https://a.clinic, https://b.clinic").is_none());
        assert!(server_warning("https://a.clinic, http://b.clinic").is_some());
        assert!(server_warning("http://127.0.0.1:7420").is_none());
    }
}
