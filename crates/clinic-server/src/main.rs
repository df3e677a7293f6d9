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
    /// Seed a demo clinic if the database is empty, and print its logins.
    #[arg(long)]
    demo: bool,
    /// Sign-in attempts allowed per username per minute.
    #[arg(long, env = "CLINIC_LOGIN_ATTEMPTS_PER_MINUTE", default_value_t = 10)]
    login_attempts_per_minute: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        // Logs on stderr: stdout carries only what `--demo` prints on purpose.
        .with_writer(std::io::stderr)
        .init();
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

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}
