//! `clinic-server`: the Clinic Desk server binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use clinic_server::{demo, AppState, Config};

#[derive(Debug, Parser)]
#[command(name = "clinic-server", about = "The Clinic Desk server")]
struct Args {
    /// The SQLite database (created if missing). Default: the platform data directory.
    #[arg(long, env = "CLINIC_DB")]
    db: Option<PathBuf>,
    /// Where to listen.
    #[arg(long, env = "CLINIC_LISTEN", default_value = "127.0.0.1:7420")]
    listen: SocketAddr,
    /// The shared key of the clinic's web booking form (`x-intake-key` header).
    #[arg(long, env = "CLINIC_INTAKE_KEY")]
    intake_key: Option<String>,
    /// Web bookings taken per minute from one address (an IPv4 address or an IPv6 /64).
    #[arg(long, env = "CLINIC_INTAKE_PER_MINUTE", default_value_t = 30)]
    intake_per_minute: u32,
    /// Seed a demo clinic if the database is empty, and print its logins.
    #[arg(long)]
    demo: bool,
    /// Failed sign-ins allowed per minute from one address (IPv4, or an IPv6 /64).
    #[arg(long, env = "CLINIC_LOGIN_ATTEMPTS_PER_MINUTE", default_value_t = 10)]
    login_attempts_per_minute: u32,
    /// Failed sign-ins per minute for one username (from all addresses) after which only
    /// addresses with no recent failure may try it.
    #[arg(long, env = "CLINIC_LOGIN_FAILURES_PER_USERNAME", default_value_t = 10)]
    login_failures_per_username: u32,
    /// Password checks that may run at once (each takes about 19 MiB). Default: the number
    /// of cores.
    #[arg(long, env = "CLINIC_LOGIN_CONCURRENT_CHECKS", value_parser = clap::value_parser!(u32).range(1..))]
    login_concurrent_checks: Option<u32>,
    /// Milliseconds a sign-in waits for a free password check before it is told the server
    /// is busy.
    #[arg(long, env = "CLINIC_LOGIN_CHECK_WAIT_MS", default_value_t = 2000)]
    login_check_wait_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // On stderr (stdout carries only what `--demo` prints on purpose), tokens redacted.
    clinic_server::logging::init();
    let args = Args::parse();
    let db = match args.db {
        Some(db) => db,
        None => directories::ProjectDirs::from("app", "clinicdesk", "clinic-server")
            .context("no home directory to keep the database in; pass --db")?
            .data_dir()
            .join("clinic.db"),
    };
    if let Some(dir) = db.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut config = Config::new(&db);
    config.login_attempts_per_minute = args.login_attempts_per_minute;
    config.login_failures_per_username = args.login_failures_per_username;
    if let Some(checks) = args.login_concurrent_checks {
        config.login_concurrent_checks = checks as usize;
    }
    config.login_check_wait = std::time::Duration::from_millis(args.login_check_wait_ms);
    config.intake_per_minute = args.intake_per_minute;
    config.intake_key = args
        .intake_key
        .or_else(|| args.demo.then(|| demo::DEMO_INTAKE_KEY.to_owned()));
    let state = AppState::open(config)
        .await
        .with_context(|| format!("opening {}", db.display()))?;
    if args.demo {
        let logins = demo::seed(&state)
            .await
            .context("seeding the demo clinic")?;
        print_logins(&logins);
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(
        "clinic server on http://{} (database {})",
        args.listen,
        db.display()
    );
    // `serve` returns once every feed has had its close frame (or after a bounded wait):
    // only then may the process end, which cuts whatever its tasks have not sent.
    clinic_server::serve(listener, state, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

#[allow(clippy::print_stdout)]
fn print_logins(logins: &[demo::DemoLogin]) {
    println!("Demo clinic. Web intake key: {}", demo::DEMO_INTAKE_KEY);
    for l in logins {
        let roles: Vec<&str> = l.roles.iter().map(|r| r.as_str()).collect();
        println!(
            "  {:<8} password {:<6} {} ({})",
            l.username,
            l.password,
            l.display_name,
            roles.join(", ")
        );
    }
}

/// Ctrl-C or SIGTERM. A signal that cannot be listened for is logged and never fires: it
/// must not stop the server the moment it starts.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for ctrl-c: {e}");
            std::future::pending::<()>().await;
        }
        tracing::info!("ctrl-c: stopping");
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
                tracing::info!("SIGTERM: stopping");
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}
