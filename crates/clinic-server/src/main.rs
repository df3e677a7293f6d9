//! `clinic-server`: the Clinic Desk server binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use clinic_protocol::Role;
use clinic_server::{admin, demo, AppState, Config, Database, Durability, ServerError, TlsConfig};

/// `clinic-server [flags]` serves (the flags of [`Args`]), as it always has;
/// `clinic-server backup --db DB FILE` copies a database, running server or not;
/// `clinic-server staff add --username U --name N --roles R[,R...]` adds a staff account,
/// running server or not.
#[derive(Debug, Parser)]
#[command(
    name = "clinic-server",
    about = "The Clinic Desk server",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Args,
    /// How log lines are written on stderr: `text`, or `json` (one object per line, for a
    /// log collector). Tokens are redacted in both.
    #[arg(
        long,
        global = true,
        env = "CLINIC_LOG_FORMAT",
        default_value = "text",
        value_parser = ["text", "json"]
    )]
    log_format: String,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Copy the database into FILE while the server runs (or not).
    ///
    /// The copy is consistent at one commit; FILE must not exist. To restore, stop the
    /// server, put FILE in the database's place (removing its old -wal and -shm files) and
    /// start it: it serves every change up to the backup, and clients that saw later ones
    /// fetch a new snapshot.
    Backup {
        /// The server's SQLite database. Default: the platform data directory's, as the
        /// server's. (A PostgreSQL store is backed up with pg_dump.)
        #[arg(long, env = "CLINIC_DB")]
        db: Option<String>,
        /// The backup to make.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Staff accounts, at the server's console (the first administrator above all).
    Staff {
        #[command(subcommand)]
        command: StaffCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
enum StaffCommand {
    /// Add a staff account, whether the server runs or not.
    ///
    /// Without --password-stdin it makes a one-time password and prints it: the person
    /// signs in with it and must change it then. A running server (same --db) makes the
    /// account itself, reached on the socket next to its database (`<db>.admin.sock`; run
    /// the command as the server's user); a stopped server's database is written directly,
    /// as is a PostgreSQL database (servers running on it or not).
    Add {
        /// The sign-in name: lowercase letters, digits, '.', '-' or '_'.
        #[arg(long)]
        username: String,
        /// The name colleagues see, e.g. "Maria Santos".
        #[arg(long = "name", value_name = "FULL NAME")]
        name: String,
        /// One or more of admin, operator, scheduler, therapist, driver, comma-separated.
        #[arg(long, value_delimiter = ',', required = true, value_parser = parse_role)]
        roles: Vec<Role>,
        /// The server's database, as for serving. Default: the platform data directory's.
        #[arg(long, env = "CLINIC_DB")]
        db: Option<String>,
        /// Read the password from the first line of stdin instead of making a one-time
        /// one (at least 10 characters; it need not be changed at sign-in).
        #[arg(long)]
        password_stdin: bool,
    },
}

fn parse_role(name: &str) -> Result<Role, String> {
    Role::parse(name.trim()).ok_or_else(|| {
        let all: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        format!("no role {name:?}; roles are {}", all.join(", "))
    })
}

/// The serving flags.
#[derive(Debug, Parser)]
#[command(name = "clinic-server", about = "The Clinic Desk server")]
struct Args {
    /// The store: a SQLite file (created if missing; a path, or `sqlite:PATH`), or a
    /// PostgreSQL database (`postgres://user:password@host/db`), which several servers may
    /// share. Default: a SQLite file in the platform data directory.
    #[arg(long, env = "CLINIC_DB")]
    db: Option<String>,
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
    /// Serve https:// (and wss:// for feeds) with this certificate: a PEM file, the
    /// server's certificate first, then any intermediate ones. Needs --tls-key. Without
    /// both, the server speaks plain http://: keep it on loopback behind a reverse proxy
    /// that does TLS (see the README's "Encryption").
    #[arg(
        long,
        env = "CLINIC_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert's certificate (PEM). Needs --tls-cert.
    #[arg(
        long,
        env = "CLINIC_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// For measurement only (the write benchmark): `normal` runs SQLite with
    /// synchronous=NORMAL, which a power cut can make lose acknowledged changes.
    #[arg(long, hide = true, default_value = "full", value_parser = ["full", "normal"])]
    durability: String,
    /// For measurement only (the write benchmark): the most writes committed together;
    /// 1 commits each alone.
    #[arg(long, hide = true, value_parser = clap::value_parser!(u32).range(1..))]
    write_group: Option<u32>,
    /// Require this bearer token for GET /metrics (`Authorization: Bearer TOKEN`). Without
    /// it, whoever reaches the server may read the metrics (counts only, no names or
    /// tokens): fine on loopback, worth setting on any other address.
    #[arg(long, env = "CLINIC_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Parsed first, for the log's format; clap reports its own errors itself.
    let cli = Cli::parse();
    // On stderr (stdout carries only what `--demo` prints on purpose), tokens redacted.
    clinic_server::logging::init_with(cli.log_format.parse().unwrap_or_default());
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Backup { db, file }) => backup(db, &file).await,
        Some(Command::Staff {
            command:
                StaffCommand::Add {
                    username,
                    name,
                    roles,
                    db,
                    password_stdin,
                },
        }) => {
            let password = if password_stdin {
                Some(read_password()?)
            } else {
                None
            };
            let add = admin::StaffAdd {
                username,
                display_name: name,
                roles,
                password,
            };
            staff_add(db, add).await
        }
    }
}

/// The first line of stdin, without its line ending.
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    anyhow::ensure!(!password.is_empty(), "no password on stdin");
    Ok(password.to_owned())
}

#[allow(clippy::print_stdout)]
async fn staff_add(db: Option<String>, add: admin::StaffAdd) -> anyhow::Result<()> {
    let db = database(db)?;
    let added = match admin::add_staff(&db, add).await {
        Ok(added) => added,
        // A refusal is the person's to fix: its sentence and its code, nothing more.
        Err(ServerError::Refused(r)) => anyhow::bail!("{} ({})", r.message, r.code.as_str()),
        Err(e) => return Err(e).with_context(|| format!("adding to {}", db.display())),
    };
    let staff = &added.staff;
    let roles: Vec<&str> = staff.roles.iter().map(|r| r.as_str()).collect();
    let how = if added.through_server {
        "by the running server"
    } else {
        "in the database"
    };
    println!(
        "Added {} ({}; {}) {how}: {}.",
        staff.username,
        staff.display_name,
        roles.join(", "),
        db.display()
    );
    if let Some(password) = &added.one_time_password {
        println!("One-time password: {password}");
        println!(
            "It is shown only this once; {} must change it at their first sign-in.",
            staff.username
        );
    }
    Ok(())
}

/// The store `--db` names, or the default: a SQLite file in the platform data directory.
fn database(db: Option<String>) -> anyhow::Result<Database> {
    match db {
        Some(db) => Ok(Database::parse(&db)?),
        None => Ok(Database::Sqlite(
            directories::ProjectDirs::from("app", "clinicdesk", "clinic-server")
                .context("no home directory to keep the database in; pass --db")?
                .data_dir()
                .join("clinic.db"),
        )),
    }
}

#[allow(clippy::print_stdout)]
async fn backup(db: Option<String>, file: &std::path::Path) -> anyhow::Result<()> {
    let db = match database(db)? {
        Database::Sqlite(path) => path,
        Database::Postgres(_) => anyhow::bail!(
            "`clinic-server backup` copies a SQLite store; back a PostgreSQL store up with \
             PostgreSQL's own tools (pg_dump, or the cluster's base backups)"
        ),
    };
    let seq = clinic_server::backup(&db, file)
        .await
        .with_context(|| format!("backing {} up into {}", db.display(), file.display()))?;
    println!(
        "Backed {} up into {}: every change up to seq {seq}.",
        db.display(),
        file.display()
    );
    Ok(())
}

async fn serve(args: Args) -> anyhow::Result<()> {
    // Before anything else: a certificate that cannot be served must not leave a server
    // half-started, nor one quietly serving clear text.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsConfig::from_pem_files(cert, key)?),
        (None, None) => None,
        _ => anyhow::bail!("--tls-cert and --tls-key go together: give both, or neither"),
    };
    let db = database(args.db)?;
    if let Some(dir) = db.sqlite_path().and_then(Path::parent) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut config = Config::on(db.clone());
    config.login_attempts_per_minute = args.login_attempts_per_minute;
    config.login_failures_per_username = args.login_failures_per_username;
    if let Some(checks) = args.login_concurrent_checks {
        config.login_concurrent_checks = checks as usize;
    }
    config.login_check_wait = std::time::Duration::from_millis(args.login_check_wait_ms);
    if args.durability == "normal" {
        config.durability = Durability::Normal;
    }
    if let Some(group) = args.write_group {
        config.write_group = group as usize;
    }
    config.intake_per_minute = args.intake_per_minute;
    config.metrics_token = args.metrics_token;
    config.intake_key = args
        .intake_key
        .or_else(|| args.demo.then(|| demo::DEMO_INTAKE_KEY.to_owned()));
    let open_metrics = config.metrics_token.is_none();
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
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        "clinic server on {scheme}://{} (database {})",
        args.listen,
        db.display()
    );
    if tls.is_none() && !args.listen.ip().is_loopback() {
        tracing::warn!(
            "serving plain http:// on {}: passwords, tokens and patient details cross the \
             network in clear text; give --tls-cert and --tls-key, or listen on 127.0.0.1 \
             behind a reverse proxy that does TLS",
            args.listen
        );
    }
    if open_metrics && !args.listen.ip().is_loopback() {
        tracing::warn!(
            "GET /metrics on {} answers anyone who can reach it; give --metrics-token to \
             require a token",
            args.listen
        );
    }
    // `serve` returns once every feed has had its close frame (or after a bounded wait):
    // only then may the process end, which cuts whatever its tasks have not sent.
    match tls {
        Some(tls) => clinic_server::serve_tls(listener, state, tls, shutdown_signal()).await?,
        None => clinic_server::serve(listener, state, shutdown_signal()).await?,
    }
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
