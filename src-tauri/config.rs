//! Where the app connects and keeps its data: command line, environment, config file.
//!
//! Precedence: `--server` / `CLINIC_DESK_SERVER`, then `server` in `<config dir>/config.json`,
//! then the server last logged in to, then `http://127.0.0.1:7420` (a local clinic server).

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
    /// The clinic server to use, e.g. https://clinic.example.org
    #[arg(long, env = "CLINIC_DESK_SERVER")]
    pub server: Option<String>,
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
    pub server: Option<String>,
    pub username: Option<String>,
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

    /// The server to offer on the login form and to resume a session with.
    pub fn server(&self) -> String {
        self.args
            .server
            .clone()
            .or_else(|| Remembered::load(&self.config_file).server)
            .or_else(|| self.remembered().server)
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned())
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
