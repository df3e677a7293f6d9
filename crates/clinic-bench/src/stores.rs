//! Benchmark 9: our server on PostgreSQL, two instances sharing one database, beside one
//! instance on SQLite, in the same run: propagation and fan-out across instances, and
//! write throughput on each store. There is no peer here; the SQLite instance is the
//! reference every PostgreSQL figure is a ratio of.
//!
//! PostgreSQL comes from outside (`--postgres` or `CLINIC_BENCH_POSTGRES`: an address of a
//! database where the user may `CREATE DATABASE`; `cargo xtask bench` makes a throwaway
//! cluster with `pg_virtualenv`). Each run makes a database of its own and drops it. Without
//! an address the SQLite figures are still taken and the PostgreSQL ones are reported as
//! not run.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use sqlx::{Connection, PgConnection};
use tokio::sync::watch;
use uuid::Uuid;

use crate::benches::{self, Env, Step};
use crate::hist::Latency;
use crate::procs::{self, Server};
use crate::sides::Writer;

/// Where the writer and the clients are, for one row of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// One instance on SQLite: the writer and every client on it.
    Sqlite,
    /// One instance on PostgreSQL (the write benchmark): what the store costs alone.
    PgOne,
    /// Two instances on one PostgreSQL database: the writer on A, every client on B, so
    /// each change crosses instances (commit, NOTIFY, B reads the log from its cursor).
    PgCross,
    /// Two instances: the writer on A, half the clients on A and half on B (as behind a
    /// load balancer); in the write benchmark, the writers alternate between A and B.
    PgSpread,
}

impl Layout {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Layout::Sqlite => "SQLite, one instance",
            Layout::PgOne => "PostgreSQL, one instance",
            Layout::PgCross => "PostgreSQL, two instances, writer on A, clients on B",
            Layout::PgSpread => "PostgreSQL, two instances, clients on both",
        }
    }

    /// The name in the write benchmark, where the writers are what is spread.
    pub(crate) fn writes_name(self) -> &'static str {
        match self {
            Layout::PgSpread => "PostgreSQL, two instances, writers on both",
            other => other.name(),
        }
    }

    pub(crate) fn on_postgres(self) -> bool {
        self != Layout::Sqlite
    }

    fn instances(self) -> usize {
        match self {
            Layout::Sqlite | Layout::PgOne => 1,
            Layout::PgCross | Layout::PgSpread => 2,
        }
    }

    /// The instance client `i` of `n` connects to.
    fn instance_of(self, i: usize, n: usize) -> usize {
        match self {
            Layout::Sqlite | Layout::PgOne => 0,
            Layout::PgCross => 1,
            // The first half (rounded up) on A: one client is then on the writer's instance.
            Layout::PgSpread => usize::from(i >= n - n / 2),
        }
    }

    /// The rows of the propagation and fan-out tables.
    pub(crate) const FEEDS: [Layout; 3] = [Layout::Sqlite, Layout::PgCross, Layout::PgSpread];
    /// The rows of the write table.
    pub(crate) const WRITES: [Layout; 3] = [Layout::Sqlite, Layout::PgOne, Layout::PgSpread];
}

/// Everything benchmark 9 measured.
#[derive(Debug, Default)]
pub(crate) struct Stores {
    /// Whether there was a PostgreSQL to run on; if not, only the SQLite rows ran.
    pub(crate) postgres: bool,
    /// The PostgreSQL server's version and durability settings, as it reports them.
    pub(crate) settings: Option<String>,
    pub(crate) propagation: Vec<(Layout, usize, Latency)>,
    pub(crate) fan_out: Vec<(Layout, usize, Vec<Step>)>,
    /// Layout, writers, mutations/s, answer latency.
    pub(crate) writes: Vec<(Layout, usize, f64, Latency)>,
}

/// The sizes of benchmark 9.
#[derive(Debug)]
pub(crate) struct StoreSizes<'a> {
    pub(crate) propagation_clients: &'a [usize],
    pub(crate) samples: u64,
    pub(crate) fan_out_clients: &'a [usize],
    pub(crate) rates: &'a [f64],
    pub(crate) step: Duration,
    pub(crate) writers: &'a [usize],
    pub(crate) write_time: Duration,
}

/// Runs every row of benchmark 9; the PostgreSQL rows only with a `postgres` address.
pub(crate) async fn run(
    env: &Env,
    postgres: Option<&str>,
    sizes: &StoreSizes<'_>,
) -> anyhow::Result<Stores> {
    let mut s = Stores {
        postgres: postgres.is_some(),
        ..Stores::default()
    };
    match postgres {
        Some(base) => s.settings = Some(settings(base).await?),
        None => eprintln!(
            "postgres: no PostgreSQL (--postgres or CLINIC_BENCH_POSTGRES): SQLite rows only"
        ),
    }
    let layouts = |all: [Layout; 3]| {
        all.into_iter()
            .filter(|l| !l.on_postgres() || postgres.is_some())
            .collect::<Vec<_>>()
    };
    for &n in sizes.propagation_clients {
        for layout in layouts(Layout::FEEDS) {
            eprintln!("postgres: propagation to {n} clients, {}", layout.name());
            let l = propagation(env, postgres, layout, n, sizes.samples)
                .await
                .with_context(|| format!("propagation to {n}, {}", layout.name()))?;
            s.propagation.push((layout, n, l));
        }
    }
    for &n in sizes.fan_out_clients {
        for layout in layouts(Layout::FEEDS) {
            eprintln!("postgres: fan-out to {n} clients, {}", layout.name());
            let steps = fan_out(env, postgres, layout, n, sizes.rates, sizes.step)
                .await
                .with_context(|| format!("fan-out to {n}, {}", layout.name()))?;
            s.fan_out.push((layout, n, steps));
        }
    }
    for &writers in sizes.writers {
        for layout in layouts(Layout::WRITES) {
            eprintln!(
                "postgres: writes, {writers} writers, {}",
                layout.writes_name()
            );
            let instances = Instances::start(env, postgres, layout).await?;
            let mut through = Vec::new();
            for addr in instances.addrs() {
                through.push(Writer::ours(addr).await?);
            }
            let (per_s, latency) = benches::write_load(&through, writers, sizes.write_time)
                .await
                .with_context(|| format!("writes, {writers} writers, {}", layout.writes_name()))?;
            instances.stop().await;
            s.writes.push((layout, writers, per_s, latency));
        }
    }
    Ok(s)
}

/// The server instances of one row, and the database they share.
#[derive(Debug)]
struct Instances {
    /// Declared before `db`: the instances go before their database is dropped.
    servers: Vec<Server>,
    db: Option<PgDatabase>,
}

impl Instances {
    async fn start(env: &Env, postgres: Option<&str>, layout: Layout) -> anyhow::Result<Instances> {
        let db = if layout.on_postgres() {
            let base = postgres.context("this row needs PostgreSQL")?;
            Some(PgDatabase::create(base).await?)
        } else {
            None
        };
        let mut servers = Vec::new();
        // One after the other: the first seeds the demo clinic (before it answers), the
        // second finds staff in the database and seeds nothing. Every instance runs on the
        // servers' core; PostgreSQL's own processes run where the kernel puts them.
        for _ in 0..layout.instances() {
            let url = db.as_ref().map(|d| d.url.as_str());
            servers.push(procs::start_ours_on(&env.server_bin, env.cores.server, url, &[]).await?);
        }
        Ok(Instances { servers, db })
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(|s| s.addr).collect()
    }

    /// Stops the instances, then drops the database.
    async fn stop(self) {
        let Instances { servers, db } = self;
        drop(servers);
        if let Some(db) = db {
            db.drop_database().await;
        }
    }
}

/// One writer on instance A sends `samples` changes one at a time; each reaches `n`
/// clients, on the instances `layout` puts them on.
async fn propagation(
    env: &Env,
    postgres: Option<&str>,
    layout: Layout,
    n: usize,
    samples: u64,
) -> anyhow::Result<Latency> {
    let instances = Instances::start(env, postgres, layout).await?;
    let (stop_tx, stop) = watch::channel(false);
    let receivers = connect(env, &instances, layout, n, &stop).await?;
    let writer = Writer::ours(instances.servers[0].addr).await?;
    let phase = env.probe.phase();
    for i in 1..=samples {
        writer.send(&env.probe, phase).await?;
        if !benches::drain(&env.probe, phase, i * n as u64, Duration::from_secs(30)).await {
            anyhow::bail!("{}: a change did not reach all {n} clients", layout.name());
        }
    }
    let _ = stop_tx.send(true);
    benches::report_failures(layout.name(), receivers).await;
    instances.stop().await;
    Ok(env.probe.stats(phase).latency.summary())
}

/// `clients` clients on the instances `layout` puts them on; the writer on A raises its
/// rate step by step as in benchmark 2.
async fn fan_out(
    env: &Env,
    postgres: Option<&str>,
    layout: Layout,
    clients: usize,
    rates: &[f64],
    step_time: Duration,
) -> anyhow::Result<Vec<Step>> {
    let instances = Instances::start(env, postgres, layout).await?;
    let (stop_tx, stop) = watch::channel(false);
    let receivers = connect(env, &instances, layout, clients, &stop).await?;
    let writer = Writer::ours(instances.servers[0].addr).await?;
    // One change to every client first: every connection is set up on its instance, and
    // B has caught up with A, before the timed steps.
    let settle = env.probe.phase();
    writer.send(&env.probe, settle).await?;
    benches::drain(&env.probe, settle, clients as u64, Duration::from_secs(60)).await;
    let label = layout.name();
    let steps = benches::rate_steps(env, label, &writer, clients, rates, step_time).await?;
    let _ = stop_tx.send(true);
    benches::report_failures(label, receivers).await;
    instances.stop().await;
    Ok(steps)
}

/// Connects `n` feed clients, each to the instance `layout` gives it.
async fn connect(
    env: &Env,
    instances: &Instances,
    layout: Layout,
    n: usize,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<crate::sides::Receiver>> {
    let mut all = Vec::with_capacity(n);
    let mut start = 0;
    // Clients on one instance are numbered contiguously (`instance_of` splits in halves),
    // so each instance gets one range; the numbers give each client its own source address.
    for (k, server) in instances.servers.iter().enumerate() {
        let end = (start..n)
            .find(|&i| layout.instance_of(i, n) != k)
            .unwrap_or(n);
        if end > start {
            all.extend(
                benches::connect_receivers(
                    env,
                    crate::sides::Which::Ours,
                    server.addr,
                    start..end,
                    stop,
                )
                .await?,
            );
        }
        start = end;
    }
    anyhow::ensure!(all.len() == n, "connected {} of {n} clients", all.len());
    Ok(all)
}

/// A database made for one row on the PostgreSQL server the bench was given; dropped by
/// [`PgDatabase::drop_database`], or (on an error path) when the value is dropped.
#[derive(Debug)]
struct PgDatabase {
    base: String,
    name: String,
    url: String,
    dropped: bool,
}

impl PgDatabase {
    async fn create(base: &str) -> anyhow::Result<PgDatabase> {
        let name = format!("clinic_bench_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(base)
            .await
            .with_context(|| format!("connecting to {}", redacted(base)))?;
        // The name is ours (letters, digits, underscores): nothing to escape.
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .with_context(|| format!("CREATE DATABASE on {}", redacted(base)))?;
        let _ = admin.close().await;
        Ok(PgDatabase {
            url: with_database(base, &name)?,
            base: base.to_owned(),
            name,
            dropped: false,
        })
    }

    async fn drop_database(mut self) {
        self.dropped = true;
        if let Err(e) = drop_database(&self.base, &self.name).await {
            eprintln!("  (could not drop database {}: {e:#})", self.name);
        }
    }
}

/// What the figures depend on: the server's version, and whether a commit waits for the disk.
async fn settings(base: &str) -> anyhow::Result<String> {
    let mut c = PgConnection::connect(base)
        .await
        .with_context(|| format!("connecting to {}", redacted(base)))?;
    let mut shown = Vec::new();
    for name in [
        "server_version",
        "fsync",
        "synchronous_commit",
        "shared_buffers",
    ] {
        // The names are ours: nothing to escape.
        let value: String = sqlx::query_scalar(&format!("SHOW {name}"))
            .fetch_one(&mut c)
            .await?;
        shown.push(format!("{name} {value}"));
    }
    let _ = c.close().await;
    Ok(shown.join(", "))
}

/// `WITH (FORCE)`: instances still connected (killed, not yet gone) are cut off.
async fn drop_database(base: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(base).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    let _ = admin.close().await;
    Ok(())
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Only after an error: nothing may block on a future inside the runtime, so the
        // statement runs on a thread and a runtime of its own, waited for here.
        let (base, name) = (self.base.clone(), self.name.clone());
        let done = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(drop_database(&base, &name)))
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("  (could not drop database {})", self.name);
        }
    }
}

/// `base` with its database (the address's path) replaced by `name`, its query kept.
fn with_database(base: &str, name: &str) -> anyhow::Result<String> {
    let (scheme, rest) = base
        .split_once("://")
        .context("a PostgreSQL address is postgres://user:password@host:port/database")?;
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    // The path starts at the first '/' after the credentials (a password may hold a '/').
    let after_at = rest.rfind('@').map_or(0, |at| at + 1);
    let authority = match rest[after_at..].find('/') {
        Some(slash) => &rest[..after_at + slash],
        None => rest,
    };
    let mut url = format!("{scheme}://{authority}/{name}");
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    Ok(url)
}

/// `url` without its password, for messages.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split_once(':').map_or(credentials, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_replaced_and_the_rest_kept() {
        assert_eq!(
            with_database("postgres://u:p@localhost:5433/postgres", "x").unwrap(),
            "postgres://u:p@localhost:5433/x"
        );
        assert_eq!(
            with_database("postgresql://u:p/w@h/db?sslmode=disable", "x").unwrap(),
            "postgresql://u:p/w@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x").unwrap(),
            "postgres://h:5432/x"
        );
        assert!(with_database("localhost/db", "x").is_err());
    }

    #[test]
    fn passwords_are_left_out_of_messages() {
        assert_eq!(
            redacted("postgres://bench:secret@h:1/db"),
            "postgres://bench:***@h:1/db"
        );
        assert_eq!(redacted("postgres://h/db"), "postgres://h/db");
    }

    #[test]
    fn spread_clients_split_in_halves_and_cross_ones_all_go_to_b() {
        let on = |layout: Layout, n: usize| -> Vec<usize> {
            (0..n).map(|i| layout.instance_of(i, n)).collect()
        };
        assert_eq!(on(Layout::PgSpread, 1), [0]);
        assert_eq!(on(Layout::PgSpread, 4), [0, 0, 1, 1]);
        assert_eq!(on(Layout::PgSpread, 5), [0, 0, 0, 1, 1]);
        assert_eq!(on(Layout::PgCross, 3), [1, 1, 1]);
        assert_eq!(on(Layout::Sqlite, 2), [0, 0]);
    }
}
