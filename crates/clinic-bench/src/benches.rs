//! The benchmarks. Each starts its own servers, drives both sides with the same load
//! generator and the same change payload, and returns figures; none judges them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use clinic_protocol::{
    Booking, BookingStatus, Change, ChangeOp, PaymentStatus, Record, RecordKind,
};
use clinic_sync::{CacheEvent, ChangeKind, Engine, EngineConfig, Origin, SyncState};
use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::hist::{Histogram, Latency};
use crate::probe::Probe;
use crate::procs::{self, Cores, Server};
use crate::sides::{self, Receiver, Which, Writer};
use crate::wire::{self, PeerPacket};

/// What every benchmark needs.
#[derive(Debug)]
pub(crate) struct Env {
    pub(crate) probe: Arc<Probe>,
    pub(crate) cores: Cores,
    pub(crate) server_bin: PathBuf,
    pub(crate) peer_dir: PathBuf,
}

impl Env {
    pub(crate) async fn start(&self, which: Which) -> anyhow::Result<Server> {
        match which {
            Which::Ours => procs::start_ours(&self.server_bin, self.cores.server).await,
            Which::Peer => procs::start_peer(&self.peer_dir, self.cores.server).await,
        }
    }
}

/// The change the peer broadcasts: our server's change JSON for a booking created by the
/// benchmark writer, field for field, so both sides carry the same bytes.
pub(crate) fn template() -> Change {
    let b = sides::new_booking("bench 0 0".into());
    let now = Utc::now();
    Change {
        seq: 1_000_000,
        actor: Some(Uuid::new_v4()),
        mutation_id: Some(Uuid::new_v4()),
        op: ChangeOp::Upsert {
            record: Record::Booking(Booking {
                id: b.id,
                client_name: b.client_name,
                client_phone: b.client_phone,
                address: b.address,
                service: b.service,
                date: b.date,
                start: b.start,
                end: b.end,
                therapist_id: None,
                driver_id: None,
                notes: b.notes,
                status: BookingStatus::Requested,
                payment: PaymentStatus::Unpaid,
                created_by: Some(Uuid::new_v4()),
                created_at: now,
                updated_at: now,
                version: 1,
                payment_detail: None,
                cancellation: None,
            }),
        },
    }
}

async fn token_for(which: Which, server: SocketAddr) -> anyhow::Result<String> {
    match which {
        Which::Ours => sides::login(server, sides::OPERATOR).await,
        Which::Peer => Ok(String::new()),
    }
}

async fn writer_for(which: Which, server: SocketAddr) -> anyhow::Result<Writer> {
    match which {
        Which::Ours => Writer::ours(server).await,
        Which::Peer => Writer::peer(server, template()).await,
    }
}

/// Connects the receiving clients numbered `range`, a few hundred handshakes at a time.
pub(crate) async fn connect_receivers(
    env: &Env,
    which: Which,
    server: SocketAddr,
    range: std::ops::Range<usize>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<Receiver>> {
    let token = token_for(which, server).await?;
    let mut all = Vec::with_capacity(range.len());
    let mut set = JoinSet::new();
    let mut next = range.start;
    while all.len() < range.len() {
        while next < range.end && set.len() < 256 {
            let (token, probe, stop) = (token.clone(), Arc::clone(&env.probe), stop.clone());
            let i = next;
            set.spawn(async move { sides::receiver(which, server, &token, i, probe, stop).await });
            next += 1;
        }
        let joined = set.join_next().await.context("a connection task")?;
        all.push(joined.context("a connection task panicked")??);
    }
    Ok(all)
}

/// Waits until `phase` has `expected` deliveries, or `grace` passes without completing.
pub(crate) async fn drain(probe: &Probe, phase: usize, expected: u64, grace: Duration) -> bool {
    let deadline = Instant::now() + grace;
    loop {
        if probe.stats(phase).delivered() >= expected {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Sends `total` changes of `phase` at `rate` per second, up to 64 in flight. Returns how
/// long sending took.
async fn write_at(
    writer: &Writer,
    probe: &Arc<Probe>,
    phase: usize,
    rate: f64,
    total: u64,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut sent = 0u64;
    let mut flight = JoinSet::new();
    while sent < total {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let due = ((start.elapsed().as_secs_f64() * rate) as u64)
            .saturating_add(1)
            .min(total);
        while sent < due {
            while flight.len() >= 64 {
                flight.join_next().await.context("a send")???;
            }
            let (writer, probe) = (writer.clone(), Arc::clone(probe));
            flight.spawn(async move { writer.send(&probe, phase).await });
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    while let Some(done) = flight.join_next().await {
        done??;
    }
    Ok(start.elapsed())
}

// --- 1. Propagation -----------------------------------------------------------------

/// How the receivers of a propagation run are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Receivers {
    /// A WebSocket client that decodes each frame (both sides).
    Wire,
    /// Our full sync engine: applied to its SQLite cache and published to subscribers.
    Engine,
}

/// One writer sends `samples` changes one at a time; each reaches `n` receivers.
pub(crate) async fn propagation(
    env: &Env,
    which: Which,
    receivers: Receivers,
    n: usize,
    samples: u64,
) -> anyhow::Result<Latency> {
    let server = env.start(which).await?;
    let (stop_tx, stop) = watch::channel(false);
    let dir = tempfile::tempdir()?;
    let (_wire, engines) = match (receivers, which) {
        (Receivers::Wire, _) => (
            connect_receivers(env, which, server.addr, 0..n, &stop).await?,
            Vec::new(),
        ),
        (Receivers::Engine, Which::Ours) => (
            Vec::new(),
            start_engines(env, server.addr, dir.path(), n, &stop).await?,
        ),
        (Receivers::Engine, Which::Peer) => bail!("the peer has no engine"),
    };
    let writer = writer_for(which, server.addr).await?;
    let phase = env.probe.phase();
    for i in 1..=samples {
        writer.send(&env.probe, phase).await?;
        if !drain(&env.probe, phase, i * n as u64, Duration::from_secs(30)).await {
            bail!("{}: a change did not reach all {n} receivers", which.name());
        }
    }
    let _ = stop_tx.send(true);
    for e in &engines {
        e.shutdown().await;
    }
    Ok(env.probe.stats(phase).latency.summary())
}

async fn start_engines(
    env: &Env,
    server: SocketAddr,
    dir: &Path,
    n: usize,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<Engine>> {
    let url = format!("http://{server}");
    let mut engines = Vec::with_capacity(n);
    for i in 0..n {
        let config = EngineConfig::new(&url, &dir.join(i.to_string()));
        let engine = Engine::login(config, sides::OPERATOR, sides::PASSWORD).await?;
        let mut events = engine.subscribe();
        let (probe, mut stop) = (Arc::clone(&env.probe), stop.clone());
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    e = events.recv() => e,
                    _ = stop.changed() => return,
                };
                match event {
                    Some(CacheEvent::Change(c)) => {
                        if let (
                            ChangeKind::Upsert {
                                record: Record::Booking(b),
                                ..
                            },
                            Origin::Server { .. },
                        ) = (&c.kind, &c.origin)
                        {
                            probe.received(&b.notes);
                        }
                    }
                    Some(_) => {}
                    None => return,
                }
            }
        });
        engines.push(engine);
    }
    for e in &engines {
        let mut status = e.status();
        tokio::time::timeout(
            Duration::from_secs(60),
            status.wait_for(|s| s.state == SyncState::Online),
        )
        .await
        .context("an engine did not come online")??;
    }
    Ok(engines)
}

// --- 2. Fan-out and 5. server memory per connection ------------------------------------

#[derive(Debug, Clone, Copy)]
pub(crate) struct Step {
    pub(crate) rate: f64,
    /// Changes per second the writer achieved.
    pub(crate) sent_rate: f64,
    pub(crate) latency: Latency,
    pub(crate) delivered: u64,
    pub(crate) expected: u64,
    pub(crate) deliveries_per_s: f64,
}

impl Step {
    /// Whether this step kept up: everything delivered, on time, at the asked rate.
    pub(crate) fn kept_up(&self, p99: Duration) -> bool {
        self.delivered == self.expected
            && self.latency.p99 <= p99
            && self.sent_rate >= 0.9 * self.rate
    }
}

#[derive(Debug, Clone)]
pub(crate) struct FanOut {
    pub(crate) clients: usize,
    pub(crate) steps: Vec<Step>,
    pub(crate) rss_per_connection_kib: f64,
    /// Socket write syscalls per delivery at `syscall_rate`.
    pub(crate) syscalls_per_delivery: Option<f64>,
    pub(crate) syscall_rate: f64,
}

/// The p99 a rate must keep to count as sustained.
pub(crate) const SUSTAINED_P99: Duration = Duration::from_millis(50);

pub(crate) async fn fan_out(
    env: &Env,
    which: Which,
    clients: usize,
    rates: &[f64],
    step_time: Duration,
) -> anyhow::Result<FanOut> {
    let server = env.start(which).await?;
    let (stop_tx, stop) = watch::channel(false);
    let writer = writer_for(which, server.addr).await?;
    // Warm the server's paths before taking its resident memory as the baseline.
    let warm = env.probe.phase();
    writer.send(&env.probe, warm).await?;
    // Memory per connection is the slope between a tenth of the clients and all of them:
    // the first connections also pay one-off costs (database connections opened for the
    // burst of sign-ins, allocator arenas), which are not per connection.
    let first = (clients / 10).max(1);
    let mut receivers = connect_receivers(env, which, server.addr, 0..first, &stop).await?;
    let before = settled_rss(env, &writer, server.pid, first).await?;
    receivers.extend(connect_receivers(env, which, server.addr, first..clients, &stop).await?);
    let after = settled_rss(env, &writer, server.pid, clients).await?;
    #[allow(clippy::cast_precision_loss)]
    let rss_per_connection_kib =
        after.saturating_sub(before) as f64 / (clients - first).max(1) as f64;

    // Write syscalls per delivery, under a load of about 20k deliveries a second: strace
    // slows the traced server several times over, so this pass runs below what either
    // server sustains untraced, and gives no latency figures.
    #[allow(clippy::cast_precision_loss)]
    let syscall_rate = (20_000.0 / clients as f64).max(1.0);
    let syscalls_per_delivery = match Tracer::attach(server.pid).await {
        Ok(tracer) => {
            let phase = env.probe.phase();
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let total = (syscall_rate * step_time.as_secs_f64()).ceil() as u64;
            write_at(&writer, &env.probe, phase, syscall_rate, total).await?;
            drain(
                &env.probe,
                phase,
                total * clients as u64,
                Duration::from_secs(120),
            )
            .await;
            let calls = tracer.finish().await?;
            // Whatever the traced server still had queued must be out before the timed
            // steps start, or they would measure that backlog.
            let settle = env.probe.phase();
            writer.send(&env.probe, settle).await?;
            drain(&env.probe, settle, clients as u64, Duration::from_secs(120)).await;
            let delivered = env.probe.stats(phase).delivered();
            #[allow(clippy::cast_precision_loss)]
            (delivered > 0).then(|| calls as f64 / delivered as f64)
        }
        Err(e) => {
            eprintln!("  (no syscall count: {e:#})");
            None
        }
    };

    let steps = rate_steps(env, which.name(), &writer, clients, rates, step_time).await?;
    let _ = stop_tx.send(true);
    report_failures(which.name(), receivers).await;
    Ok(FanOut {
        clients,
        steps,
        rss_per_connection_kib,
        syscalls_per_delivery,
        syscall_rate,
    })
}

/// Raises the send rate step by step, `step_time` at each of `rates`, until a step does not
/// keep up (p99 over [`SUSTAINED_P99`], or deliveries missing): what each step achieved.
pub(crate) async fn rate_steps(
    env: &Env,
    label: &str,
    writer: &Writer,
    clients: usize,
    rates: &[f64],
    step_time: Duration,
) -> anyhow::Result<Vec<Step>> {
    let mut steps = Vec::new();
    for &rate in rates {
        let phase = env.probe.phase();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let total = (rate * step_time.as_secs_f64()).ceil().max(1.0) as u64;
        let start = env.probe.elapsed();
        let took = write_at(writer, &env.probe, phase, rate, total).await?;
        let expected = total * clients as u64;
        drain(&env.probe, phase, expected, Duration::from_secs(5)).await;
        let stats = env.probe.stats(phase);
        let delivered = stats.delivered();
        let span = env.probe.last_delivery(phase).saturating_sub(start);
        #[allow(clippy::cast_precision_loss)]
        let step = Step {
            rate,
            sent_rate: total as f64 / took.as_secs_f64().max(1e-9),
            latency: stats.latency.summary(),
            delivered,
            expected,
            deliveries_per_s: delivered as f64 / span.as_secs_f64().max(1e-9),
        };
        eprintln!(
            "  {label} {clients} clients at {rate}/s: p99 {:.2} ms, {}/{} delivered, {:.0} deliveries/s",
            step.latency.p99.as_secs_f64() * 1e3,
            step.delivered,
            step.expected,
            step.deliveries_per_s
        );
        steps.push(step);
        if !step.kept_up(SUSTAINED_P99) {
            break;
        }
    }
    Ok(steps)
}

/// The server's resident memory once a change has reached all `clients` connected
/// clients (so every connection is fully set up on the server).
async fn settled_rss(env: &Env, writer: &Writer, pid: u32, clients: usize) -> anyhow::Result<u64> {
    let settle = env.probe.phase();
    writer.send(&env.probe, settle).await?;
    drain(&env.probe, settle, clients as u64, Duration::from_secs(60)).await;
    procs::rss_kib(pid)
}

/// Says how many receivers ended on an error (a resync for being too slow, a closed
/// socket): their missing deliveries already count against the step they happened in.
pub(crate) async fn report_failures(label: &str, receivers: Vec<Receiver>) {
    let mut failed = 0;
    let mut first = None;
    for r in receivers {
        if let Ok(Err(e)) = r.task.await {
            failed += 1;
            first.get_or_insert(e);
        }
    }
    if let Some(e) = first {
        eprintln!("  {label}: {failed} clients ended early; the first: {e:#}");
    }
}

/// `strace -c` attached to a server: counts its socket write syscalls until finished.
#[derive(Debug)]
struct Tracer {
    child: tokio::process::Child,
    out: tempfile::NamedTempFile,
}

const WRITE_CALLS: &str = "write,writev,sendto,sendmsg,sendmmsg";

impl Tracer {
    async fn attach(pid: u32) -> anyhow::Result<Tracer> {
        use tokio::io::AsyncBufReadExt;
        let out = tempfile::NamedTempFile::new()?;
        let mut child = tokio::process::Command::new("strace")
            .args(["-c", "-f", "-e", &format!("trace={WRITE_CALLS}"), "-o"])
            .arg(out.path())
            .args(["-p", &pid.to_string()])
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting strace")?;
        // strace says "Process N attached" once it has the process.
        let stderr = child.stderr.take().context("strace's stderr")?;
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .context("strace did not attach")??;
        if !first.is_some_and(|l| l.contains("attached")) {
            bail!("strace could not attach (no ptrace here?)");
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Tracer { child, out })
    }

    /// Detaches and returns the number of write syscalls seen.
    async fn finish(mut self) -> anyhow::Result<u64> {
        let pid = self.child.id().context("strace exited early")?;
        std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()?;
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .context("strace did not stop")??;
        let text = std::fs::read_to_string(self.out.path())?;
        let calls = text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let name = *f.last()?;
                if !WRITE_CALLS.split(',').any(|c| c == name) {
                    return None;
                }
                // % time, seconds, usecs/call, calls, [errors], syscall
                f.get(3)?.parse::<u64>().ok()
            })
            .sum();
        Ok(calls)
    }
}

// --- 3. Catch-up ------------------------------------------------------------------------

/// A client offline while `k` changes happen, then back: time until it has all of them
/// (ours: committed to the engine's SQLite cache).
pub(crate) async fn catch_up(env: &Env, which: Which, k: u64) -> anyhow::Result<Duration> {
    let server = env.start(which).await?;
    let writer = writer_for(which, server.addr).await?;
    match which {
        Which::Ours => {
            let dir = tempfile::tempdir()?;
            let config = EngineConfig::new(&format!("http://{}", server.addr), dir.path());
            let engine = Engine::login(config.clone(), sides::OPERATOR, sides::PASSWORD).await?;
            let mut status = engine.status();
            status.wait_for(|s| s.state == SyncState::Online).await?;
            engine.shutdown().await;
            drop(engine);
            let phase = env.probe.phase();
            write_at(&writer, &env.probe, phase, f64::INFINITY, k).await?;
            let start = Instant::now();
            let engine = Engine::resume(config).await?;
            let mut events = engine.subscribe();
            let mut seen = 0;
            while seen < k {
                let event = tokio::time::timeout(Duration::from_secs(120), events.recv())
                    .await
                    .context("catch-up stalled")?
                    .context("the engine stopped")?;
                if let CacheEvent::Change(c) = event {
                    if matches!(&c.kind, ChangeKind::Upsert { record: Record::Booking(b), .. } if b.notes.starts_with(&format!("bench {phase} ")))
                    {
                        seen += 1;
                    }
                    if matches!(c.kind, ChangeKind::Reset) {
                        bail!("the engine resynced instead of catching up");
                    }
                }
            }
            let took = start.elapsed();
            engine.shutdown().await;
            Ok(took)
        }
        Which::Peer => {
            let from = wire::source(7);
            let mut socket = wire::peer_socket(server.addr, from, None).await?;
            // One change first, so that the client has an offset to recover from.
            let first = env.probe.phase();
            writer.send(&env.probe, first).await?;
            let offset = loop {
                let text = wire::next_text(&mut socket.ws).await?;
                if let PeerPacket::Change {
                    offset: Some(o), ..
                } = wire::peer_packet(&text)?
                {
                    break o;
                }
            };
            let pid = socket.pid.clone();
            drop(socket);
            writer.wait_gone(1).await?;
            let phase = env.probe.phase();
            write_at(&writer, &env.probe, phase, f64::INFINITY, k).await?;
            let start = Instant::now();
            let mut socket = wire::peer_socket(server.addr, from, Some((&pid, &offset))).await?;
            let prefix = format!("bench {phase} ");
            let counts = |text: &str| -> anyhow::Result<u64> {
                if let PeerPacket::Change { change, .. } = wire::peer_packet(text)? {
                    if Probe::marker(&change).is_some_and(|m| m.starts_with(&prefix)) {
                        return Ok(1);
                    }
                }
                Ok(0)
            };
            let mut seen = 0;
            for text in std::mem::take(&mut socket.early) {
                seen += counts(&text)?;
            }
            while seen < k {
                let text =
                    tokio::time::timeout(Duration::from_secs(120), wire::next_text(&mut socket.ws))
                        .await
                        .context("the peer's recovery stalled")??;
                if text == "2" {
                    wire::send_text(&mut socket.ws, "3".into()).await?;
                } else {
                    seen += counts(&text)?;
                }
            }
            Ok(start.elapsed())
        }
    }
}

// --- 4. Local cache -----------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
pub(crate) struct CacheFigures {
    pub(crate) ours_rows_per_s: f64,
    pub(crate) floor_rows_per_s: f64,
    /// The floor again without the cache's seven secondary indexes: what they cost.
    pub(crate) bare_rows_per_s: f64,
    pub(crate) ours_read: Latency,
    pub(crate) floor_read: Latency,
}

fn bookings(n: usize) -> Vec<Record> {
    let t = template();
    (0..n)
        .map(|i| {
            let ChangeOp::Upsert {
                record: Record::Booking(mut b),
            } = t.op.clone()
            else {
                unreachable!("the template is a booking")
            };
            b.id = Uuid::new_v4();
            b.notes = format!("bench cache {i}");
            Record::Booking(b)
        })
        .collect()
}

/// Rows per feed batch: what the server puts in one frame.
const BATCH: usize = clinic_protocol::wire::MAX_BATCH_CHANGES;

pub(crate) async fn cache(rows: usize, reads: usize) -> anyhow::Result<CacheFigures> {
    let records = bookings(rows);
    let dir = tempfile::tempdir()?;

    let ours = clinic_sync::probe::CacheProbe::open(&dir.path().join("cache.db")).await?;
    let start = Instant::now();
    for (i, chunk) in records.chunks(BATCH).enumerate() {
        ours.apply(chunk, i as u64 + 1).await?;
    }
    #[allow(clippy::cast_precision_loss)]
    let ours_rows_per_s = rows as f64 / start.elapsed().as_secs_f64();
    let read = Histogram::new();
    for r in records.iter().step_by((rows / reads).max(1)).take(reads) {
        let t = Instant::now();
        let got = ours.read(RecordKind::Booking, r.id()).await?;
        read.record(t.elapsed());
        if got.is_none() {
            bail!("a record the cache was given is missing");
        }
    }
    let ours_read = read.summary();

    let (floor_rows_per_s, floor_read) =
        floor(&dir.path().join("floor.db"), &records, reads, false)?;
    let (bare_rows_per_s, _) = floor(&dir.path().join("bare.db"), &records, reads, true)?;
    Ok(CacheFigures {
        ours_rows_per_s,
        floor_rows_per_s,
        bare_rows_per_s,
        ours_read,
        floor_read,
    })
}

/// The same rows into the same schema with rusqlite: one prepared statement per row, one
/// transaction per batch, JSON encoded and decoded the same way. `bare`: without the
/// secondary indexes.
fn floor(
    path: &Path,
    records: &[Record],
    reads: usize,
    bare: bool,
) -> anyhow::Result<(f64, Latency)> {
    let mut db = rusqlite::Connection::open(path)?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "NORMAL")?;
    for sql in clinic_sync::probe::SCHEMA {
        db.execute_batch(sql)?;
    }
    if bare {
        let indexes: Vec<String> = db
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records' AND sql IS NOT NULL")?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        for index in indexes {
            db.execute_batch(&format!("DROP INDEX {index}"))?;
        }
    }
    let start = Instant::now();
    for (i, chunk) in records.chunks(BATCH).enumerate() {
        let tx = db.transaction()?;
        {
            let mut insert = tx.prepare_cached(&format!(
                "INSERT INTO records (kind, id, body, day, start_time, status, \
                 therapist_id, driver_id, staff_id, sender_id, recipient_id, at, unread, payment) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?, NULL, ?){}",
                clinic_sync::probe::UPSERT
            ))?;
            for r in chunk {
                let Record::Booking(b) = r else { continue };
                insert.execute(rusqlite::params![
                    "booking",
                    b.id.to_string(),
                    serde_json::to_string(r)?,
                    b.date.to_string(),
                    b.start.to_string(),
                    b.status.as_str(),
                    b.therapist_id.map(|t| t.to_string()),
                    b.driver_id.map(|t| t.to_string()),
                    b.created_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    b.payment.as_str(),
                ])?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('cursor', ?)",
                [(i + 1).to_string()],
            )?;
        }
        tx.commit()?;
    }
    #[allow(clippy::cast_precision_loss)]
    let rows_per_s = records.len() as f64 / start.elapsed().as_secs_f64();
    let read = Histogram::new();
    let mut select = db.prepare_cached("SELECT body FROM records WHERE kind = ? AND id = ?")?;
    for r in records
        .iter()
        .step_by((records.len() / reads).max(1))
        .take(reads)
    {
        let t = Instant::now();
        let body: String = select
            .query_row(rusqlite::params!["booking", r.id().to_string()], |row| {
                row.get(0)
            })?;
        let _: Record = serde_json::from_str(&body)?;
        read.record(t.elapsed());
    }
    Ok((rows_per_s, read.summary()))
}

// --- 7. Server writes -----------------------------------------------------------------

/// How our server commits, for the write benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// What the server runs: `synchronous=FULL` (every acknowledged change is on disk) and
    /// group commit (writers arriving together share one commit and its sync).
    FullGrouped,
    /// `synchronous=FULL`, one commit per write: what durability costs without grouping.
    FullAlone,
    /// `synchronous=NORMAL`, one commit per write: the server before (a power cut could
    /// lose acknowledged changes).
    NormalAlone,
}

impl Commit {
    pub(crate) const ALL: [Commit; 3] =
        [Commit::FullGrouped, Commit::FullAlone, Commit::NormalAlone];

    /// The server's (hidden, measurement-only) flags for this setting.
    fn flags(self) -> &'static [&'static str] {
        match self {
            Commit::FullGrouped => &[],
            Commit::FullAlone => &["--write-group", "1"],
            Commit::NormalAlone => &["--durability", "normal", "--write-group", "1"],
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Commit::FullGrouped => "FULL, group commit",
            Commit::FullAlone => "FULL, a commit per write",
            Commit::NormalAlone => "NORMAL, a commit per write (before)",
        }
    }
}

/// One write run: `writers` concurrent writers, each sending its next change as soon as
/// the last is answered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Writes {
    pub(crate) commit: Commit,
    pub(crate) writers: usize,
    pub(crate) per_s: f64,
    /// From sending a mutation to its answer (committed, and durable with FULL).
    pub(crate) latency: Latency,
}

/// `writers` operators creating bookings over HTTP as fast as they are answered, for
/// `time` after a short warm-up; our server alone (the peer writes nothing to disk).
pub(crate) async fn writes(
    env: &Env,
    commit: Commit,
    writers: usize,
    time: Duration,
) -> anyhow::Result<Writes> {
    let server = procs::start_ours_with(&env.server_bin, env.cores.server, commit.flags()).await?;
    let writer = Writer::ours(server.addr).await?;
    let (per_s, latency) = write_load(&[writer], writers, time).await?;
    Ok(Writes {
        commit,
        writers,
        per_s,
        latency,
    })
}

/// `writers` concurrent writers, writer `w` on `through[w % through.len()]`, each sending
/// its next change as soon as the last is answered, for `time` after a warm-up through
/// each: mutations per second, and the answer latency.
pub(crate) async fn write_load(
    through: &[Writer],
    writers: usize,
    time: Duration,
) -> anyhow::Result<(f64, Latency)> {
    for (i, writer) in through.iter().enumerate() {
        for j in 0..writers.max(8) {
            writer.create(format!("warm-up {i} {j}")).await?;
        }
    }
    let latency = Arc::new(Histogram::new());
    let start = Instant::now();
    let deadline = start + time;
    let mut tasks = JoinSet::new();
    for w in 0..writers {
        let (writer, latency) = (through[w % through.len()].clone(), Arc::clone(&latency));
        tasks.spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                writer.create(format!("writer {w} change {n}")).await?;
                latency.record(sent.elapsed());
                n += 1;
            }
            anyhow::Ok(n)
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done.context("a writer panicked")??;
    }
    let took = start.elapsed();
    #[allow(clippy::cast_precision_loss)]
    let per_s = total as f64 / took.as_secs_f64();
    Ok((per_s, latency.summary()))
}
