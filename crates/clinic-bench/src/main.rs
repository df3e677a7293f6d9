//! `clinic-bench`: our server and sync engine measured side by side with a Socket.IO 4.x
//! peer, in the same run, on the same machine, by the same load generator.
//!
//! # Modules
//! - `procs`: the servers under test as child processes pinned to their own core; what
//!   /proc says about them (resident memory, write syscalls).
//! - `wire`: WebSocket clients for both wire formats (our feed, Engine.IO/Socket.IO).
//! - `sides`: each system as the benchmarks drive it: receivers and a writer.
//! - `probe`: markers in changes and the clock that turns them into latencies.
//! - `hist`: a lock-free latency histogram.
//! - `benches`: propagation, fan-out (with memory per connection), catch-up, local cache,
//!   server writes.
//! - `history`: the dashboards' reads on a cache holding years of a clinic's history.
//! - `stores`: the server on PostgreSQL, two instances on one database, beside one on
//!   SQLite: propagation and fan-out across instances, writes on each store.
//! - `report`: the table on stdout and the results section of BENCHMARKS.md.
//!
//! Benchmarks print figures; nothing here fails on a time.

mod benches;
mod hist;
mod history;
mod probe;
mod procs;
mod report;
mod sides;
mod stores;
mod wire;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::benches::{Env, Receivers};
use crate::sides::Which;

#[derive(Debug, Parser)]
#[command(
    name = "clinic-bench",
    about = "Clinic Desk benchmarks against a Socket.IO peer"
)]
struct Args {
    /// Small sizes that finish in under a minute (a smoke run).
    #[arg(long)]
    quick: bool,
    /// Our server binary (default: `clinic-server` beside this one).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// The window benchmark's results (JSON written by tests/window_latency.rs).
    #[arg(long)]
    windows: Option<PathBuf>,
    /// The growth benchmark's results (JSON written by tests/window_growth.rs).
    #[arg(long)]
    growth: Option<PathBuf>,
    /// Write the results section of this markdown file (between its result markers).
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Run only these benchmarks (propagation, fan-out, catch-up, cache, writes, history,
    /// postgres); default: all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Fan-out client counts to run instead of the size's own (for profiling one case).
    #[arg(long, value_delimiter = ',')]
    clients: Vec<usize>,
    /// Catch-up sizes (K) to run instead of the size's own (for profiling one case).
    #[arg(long, value_delimiter = ',')]
    catch_up: Vec<u64>,
    /// A PostgreSQL database where the user may CREATE DATABASE
    /// (`postgres://user:password@host:port/db`), for the `postgres` benchmark, which makes
    /// a database of its own there for each row. Without it, only that benchmark's SQLite
    /// rows run.
    #[arg(long, env = "CLINIC_BENCH_POSTGRES", hide_env_values = true)]
    postgres: Option<String>,
    /// The command line to record as the one that produced the results.
    #[arg(long, default_value = "cargo xtask bench")]
    command: String,
}

/// The sizes of one run.
#[derive(Debug)]
pub(crate) struct Sizes {
    pub(crate) propagation_wire: Vec<usize>,
    pub(crate) propagation_engines: Vec<usize>,
    pub(crate) samples: u64,
    pub(crate) fan_out_clients: Vec<usize>,
    pub(crate) rates: Vec<f64>,
    pub(crate) step: Duration,
    pub(crate) catch_up: Vec<u64>,
    pub(crate) cache_rows: usize,
    pub(crate) cache_reads: usize,
    /// Concurrent writers of the write benchmark, and how long each setting is measured.
    pub(crate) writers: Vec<usize>,
    pub(crate) write_time: Duration,
    /// Bookings in the generated histories of the read benchmark.
    pub(crate) history: Vec<usize>,
    /// Clients of the store benchmark's propagation and fan-out (SQLite against two
    /// instances on PostgreSQL).
    pub(crate) store_propagation: Vec<usize>,
    pub(crate) store_fan_out: Vec<usize>,
}

impl Sizes {
    fn quick() -> Sizes {
        Sizes {
            propagation_wire: vec![1, 10],
            propagation_engines: vec![1, 10],
            samples: 20,
            fan_out_clients: vec![100],
            rates: vec![10.0, 100.0, 1000.0],
            step: Duration::from_millis(500),
            catch_up: vec![1_000],
            cache_rows: 10_000,
            cache_reads: 500,
            writers: vec![1, 16],
            write_time: Duration::from_millis(500),
            history: vec![1_000, 10_000],
            store_propagation: vec![10],
            store_fan_out: vec![100],
        }
    }

    fn full() -> Sizes {
        Sizes {
            propagation_wire: vec![1, 100, 1_000],
            propagation_engines: vec![1, 100],
            samples: 200,
            fan_out_clients: vec![100, 1_000, 10_000],
            rates: vec![10.0, 30.0, 100.0, 300.0, 1_000.0, 3_000.0, 10_000.0],
            step: Duration::from_secs(2),
            catch_up: vec![1_000, 100_000],
            cache_rows: 100_000,
            cache_reads: 2_000,
            writers: vec![1, 16],
            write_time: Duration::from_secs(5),
            history: vec![1_000, 10_000, 150_000],
            store_propagation: vec![1, 100],
            store_fan_out: vec![100, 1_000],
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cores = procs::Cores::split();
    // Pin before the runtime starts its threads, so that they all inherit the core.
    if let Some(core) = cores.load {
        procs::pin_self(core)?;
    }
    let server_bin = match args.server_bin.clone() {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("the benchmark binary has no folder")?
            .join("clinic-server"),
    };
    let env = Env {
        probe: Arc::new(probe::Probe::new(1_000_000)),
        cores,
        server_bin,
        peer_dir: procs::peer_dir(),
    };
    let mut sizes = if args.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    if !args.catch_up.is_empty() {
        sizes.catch_up.clone_from(&args.catch_up);
    }
    if !args.clients.is_empty() {
        sizes.fan_out_clients.clone_from(&args.clients);
    }
    // The load generator has one core: one worker thread uses it without contention.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let postgres = args
        .postgres
        .as_deref()
        .filter(|url| !url.trim().is_empty());
    let results = runtime.block_on(run(&env, &sizes, &args.only, postgres))?;
    let windows = match &args.windows {
        Some(path) => Some(report::Windows::read(path)?),
        None => None,
    };
    let growth = match &args.growth {
        Some(path) => Some(report::Growth::read(path)?),
        None => None,
    };
    let report = report::Report {
        quick: args.quick,
        command: args.command.clone(),
        cores,
        results,
        windows,
        growth,
    };
    report.print();
    if let Some(path) = &args.markdown {
        report.write_markdown(path)?;
        eprintln!("wrote the results into {}", path.display());
    }
    Ok(())
}

async fn run(
    env: &Env,
    sizes: &Sizes,
    only: &[String],
    postgres: Option<&str>,
) -> anyhow::Result<report::Results> {
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let mut r = report::Results::default();
    for &n in sizes
        .propagation_wire
        .iter()
        .filter(|_| wanted("propagation"))
    {
        for which in [Which::Ours, Which::Peer] {
            eprintln!("propagation: {} to {n} wire clients", which.name());
            let l = benches::propagation(env, which, Receivers::Wire, n, sizes.samples)
                .await
                .with_context(|| format!("propagation, {} to {n}", which.name()))?;
            r.propagation.push((which, Receivers::Wire, n, l));
        }
    }
    for &n in sizes
        .propagation_engines
        .iter()
        .filter(|_| wanted("propagation"))
    {
        eprintln!("propagation: ours to {n} engines");
        let l = benches::propagation(env, Which::Ours, Receivers::Engine, n, sizes.samples)
            .await
            .with_context(|| format!("propagation to {n} engines"))?;
        r.propagation.push((Which::Ours, Receivers::Engine, n, l));
    }
    for &clients in sizes.fan_out_clients.iter().filter(|_| wanted("fan-out")) {
        for which in [Which::Ours, Which::Peer] {
            eprintln!("fan-out: {} with {clients} clients", which.name());
            let f = benches::fan_out(env, which, clients, &sizes.rates, sizes.step)
                .await
                .with_context(|| format!("fan-out, {} with {clients}", which.name()))?;
            r.fan_out.push((which, f));
        }
    }
    for &k in sizes.catch_up.iter().filter(|_| wanted("catch-up")) {
        for which in [Which::Ours, Which::Peer] {
            eprintln!("catch-up: {} after {k} changes", which.name());
            let d = benches::catch_up(env, which, k)
                .await
                .with_context(|| format!("catch-up, {} after {k}", which.name()))?;
            r.catch_up.push((which, k, d));
        }
    }
    if wanted("cache") {
        eprintln!("local cache: {} rows", sizes.cache_rows);
        r.cache = Some(benches::cache(sizes.cache_rows, sizes.cache_reads).await?);
    }
    for &writers in sizes.writers.iter().filter(|_| wanted("writes")) {
        for commit in benches::Commit::ALL {
            eprintln!("writes: {writers} writers, {}", commit.name());
            let w = benches::writes(env, commit, writers, sizes.write_time)
                .await
                .with_context(|| format!("writes, {writers} writers, {}", commit.name()))?;
            r.writes.push(w);
        }
    }
    if wanted("postgres") {
        let store_sizes = stores::StoreSizes {
            propagation_clients: &sizes.store_propagation,
            samples: sizes.samples,
            fan_out_clients: &sizes.store_fan_out,
            rates: &sizes.rates,
            step: sizes.step,
            writers: &sizes.writers,
            write_time: sizes.write_time,
        };
        r.stores = Some(stores::run(env, postgres, &store_sizes).await?);
    }
    for &bookings in sizes.history.iter().filter(|_| wanted("history")) {
        eprintln!("history: dashboard reads with {bookings} bookings");
        r.history.push(
            history::history(bookings)
                .await
                .with_context(|| format!("history of {bookings} bookings"))?,
        );
    }
    Ok(r)
}
