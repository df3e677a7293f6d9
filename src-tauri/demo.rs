//! Demo mode: an embedded clinic server on loopback with the demo clinic, so the app can be
//! tried (and screenshotted) without a real server.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use anyhow::Context;
use clinic_server::demo::{DemoLogin, DEMO_INTAKE_KEY};
use clinic_server::Embedded;

/// The demo login the app signs in with: the clinic's owner, operator and therapist at
/// once, so the demo shows several kinds of dashboard side by side.
pub const DEMO_USER: &str = "maria";

#[derive(Debug)]
pub struct Demo {
    pub url: String,
    pub logins: Vec<DemoLogin>,
    /// Dropping this stops the server gracefully.
    _server: Embedded,
}

impl Demo {
    pub fn password_of(&self, username: &str) -> Option<&str> {
        self.logins
            .iter()
            .find(|l| l.username == username)
            .map(|l| l.password.as_str())
    }
}

/// Starts a fresh demo clinic (dated today) whose database lives in `dir`.
pub async fn start(dir: &Path) -> anyhow::Result<Demo> {
    // A fresh clinic every run: the demo's bookings are relative to today.
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut config = clinic_server::Config::new(dir.join("demo-clinic.db"));
    config.intake_key = Some(DEMO_INTAKE_KEY.to_owned());
    let state = clinic_server::AppState::open(config)
        .await
        .context("opening the demo clinic's database")?;
    let logins = clinic_server::demo::seed(&state)
        .await
        .context("seeding the demo clinic")?;
    // Loopback only, any free port: nobody else should reach the demo clinic.
    let server = Embedded::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), state)
        .await
        .context("serving the demo clinic on loopback")?;
    let url = server.url();
    tracing::info!("demo clinic server at {url}");
    Ok(Demo {
        url,
        logins,
        _server: server,
    })
}
