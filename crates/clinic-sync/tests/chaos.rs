//! Chaos and crash consistency, with real processes killed by SIGKILL.
//!
//! - [`chaos_run`]: the `clinic-server` binary and several engines, each engine a process
//!   of its own (`examples/engine_process.rs`) behind its own cuttable proxy; random
//!   changes from every user (often on the same bookings), random partitions, the server
//!   and engines killed and restarted; then, healed, every engine must converge on what
//!   the server says its user may see, and the server's log must hold every change an
//!   engine queued exactly once or its rejection. Its size comes from `CLINIC_CHAOS_SIZE`
//!   (`ci`, the default, runs in every `cargo test`; `long` is `cargo xtask chaos`, which
//!   writes the figures into RELIABILITY.md through `CLINIC_CHAOS_REPORT`).
//! - [`a_killed_catch_up_leaves_a_cursor_that_matches_the_cache`] and
//!   [`killed_submits_leave_an_intact_outbox`]: an engine process killed in the middle of
//!   applying thousands of changes, or of submitting, leaves a cache whose cursor matches
//!   its records and an outbox holding every change whose `submit` returned.
//!
//! Every random choice comes from one seed, printed at the start; `CLINIC_CHAOS_SEED=<seed>`
//! replays the same choices (the timing of the processes is the machine's). The binaries
//! come from the target directory: `cargo test --workspace` builds them, or
//! `cargo build -p clinic-server -p clinic-sync --bin clinic-server --example engine_process`.
//! Every wait polls with a deadline; the only sleeps pick a random moment to kill.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clinic_protocol::rules;
use clinic_protocol::{ErrorCode, Mutation, MutationOutcome, Record, RecordKind, Snapshot, Staff};
use clinic_sync::{Engine, EngineConfig, Timing, View};
use clinic_test_kit::process::{built_binary, ServerProcess};
use clinic_test_kit::{staff_id, Proxy, Staffer, TestServer, DEADLINE};
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use uuid::Uuid;

/// The longest an engine process may take to answer one command (a loaded machine with a
/// dozen debug processes on two cores is slow, but never this slow).
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// The seed of this run: `CLINIC_CHAOS_SEED`, or a new one. Printed, to replay.
fn seed(test: &str) -> u64 {
    let seed = match std::env::var("CLINIC_CHAOS_SEED") {
        Ok(s) => s.parse().expect("CLINIC_CHAOS_SEED is a number"),
        Err(_) => rand::random(),
    };
    eprintln!("{test}: seed {seed} (replay with CLINIC_CHAOS_SEED={seed})");
    seed
}

/// A record as one string, to compare caches and snapshots.
fn norm(record: &Record) -> String {
    serde_json::to_string(record).expect("a record serializes")
}

fn sorted(records: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = records.into_iter().collect();
    v.sort();
    v
}

fn snapshot_records(s: &Snapshot) -> Vec<String> {
    sorted(s.records.iter().map(norm))
}

// ---------------------------------------------------------------------------------------
// An engine in a process of its own.

/// What the engine processes of one client reported about its changes, over every start.
#[derive(Debug, Default)]
struct Verdicts {
    confirmed: HashMap<Uuid, u32>,
    rejected: HashMap<Uuid, Vec<ErrorCode>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `examples/engine_process` running: its stdout is read by a task that files verdict
/// events in [`Verdicts`] and queues every other line for [`EngineProcess::next`].
#[derive(Debug)]
struct EngineProcess {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<Value>,
    reader: tokio::task::JoinHandle<()>,
    log: PathBuf,
}

impl EngineProcess {
    /// Starts the engine on `dir` for `server` (signing `login` in, or resuming) in `mode`
    /// (with its options), and waits for it to say it is ready.
    async fn spawn(
        server: &str,
        dir: &Path,
        login: Option<&str>,
        mode: &[&str],
        log: &Path,
        verdicts: Arc<Mutex<Verdicts>>,
    ) -> EngineProcess {
        let bin = built_binary(
            "examples/engine_process",
            "cargo build -p clinic-sync --example engine_process",
        );
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("the engine's log file");
        let mut command = Command::new(bin);
        command.arg("--server").arg(server).arg("--dir").arg(dir);
        if let Some(user) = login {
            command.arg("--login").arg(user);
        }
        let mut child = command
            .args(mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("start the engine process");
        let stdin = child.stdin.take().expect("its stdin");
        let stdout = child.stdout.take().expect("its stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut out = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = out.next_line().await {
                let value: Value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                match value["event"].as_str() {
                    Some("confirmed") => {
                        let id = parse_id(&value["id"]);
                        *lock(&verdicts).confirmed.entry(id).or_default() += 1;
                    }
                    Some("rejected") => {
                        let id = parse_id(&value["id"]);
                        let code: ErrorCode = serde_json::from_value(value["code"].clone())
                            .expect("a rejection's code");
                        lock(&verdicts).rejected.entry(id).or_default().push(code);
                    }
                    _ => {
                        let _ = tx.send(value);
                    }
                }
            }
        });
        let mut process = EngineProcess {
            child,
            stdin,
            lines,
            reader,
            log: log.to_path_buf(),
        };
        let ready = process.next().await;
        assert!(
            ready.as_ref().is_some_and(|r| r.get("ready").is_some()),
            "the engine process did not start: {ready:?}\n{}",
            process.log_tail()
        );
        process
    }

    /// The next line it printed (not a verdict); `None` once it has exited.
    async fn next(&mut self) -> Option<Value> {
        match tokio::time::timeout(ANSWER_WITHIN, self.lines.recv()).await {
            Ok(line) => line,
            Err(_) => panic!(
                "the engine process said nothing for {ANSWER_WITHIN:?}\n{}",
                self.log_tail()
            ),
        }
    }

    /// Sends a command (serve mode) and returns its answer.
    async fn ask(&mut self, command: Value) -> Value {
        let line = format!("{command}\n");
        if let Err(e) = self.stdin.write_all(line.as_bytes()).await {
            panic!("the engine process is gone ({e})\n{}", self.log_tail());
        }
        match self.next().await {
            Some(answer) => answer,
            None => panic!("the engine process died\n{}", self.log_tail()),
        }
    }

    /// SIGKILL. Returns every line it printed that was not read yet (the pipe keeps what
    /// was written before the kill); its verdicts are filed by then.
    async fn kill(mut self) -> Vec<Value> {
        self.child.kill().await.expect("SIGKILL the engine process");
        (&mut self.reader).await.expect("the reader task");
        let mut rest = Vec::new();
        while let Ok(line) = self.lines.try_recv() {
            rest.push(line);
        }
        rest
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "engine log ({}):\n{}",
            self.log.display(),
            lines[lines.len().saturating_sub(30)..].join("\n")
        )
    }
}

fn parse_id(v: &Value) -> Uuid {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a mutation id: {v}"))
}

// ---------------------------------------------------------------------------------------
// Reading the SQLite files themselves: the server's log and outcomes, an engine's cache.

async fn open_db(path: &Path) -> SqlitePool {
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(path))
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// What the server's database holds about mutations.
#[derive(Debug)]
struct ServerLog {
    /// Every change-log row: seq and the mutation that made it (none for staff).
    changes: Vec<(u64, Option<Uuid>)>,
    head: u64,
    /// The outcomes table: every verdict the server recorded, by mutation id.
    outcomes: HashMap<Uuid, Vec<MutationOutcome>>,
}

impl ServerLog {
    async fn read(db: &Path) -> ServerLog {
        let pool = open_db(db).await;
        let changes = sqlx::query("SELECT seq, mutation_id FROM changes ORDER BY seq")
            .fetch_all(&pool)
            .await
            .expect("read the change log")
            .iter()
            .map(|row| {
                let seq: i64 = row.get("seq");
                let id: Option<String> = row.get("mutation_id");
                (
                    u64::try_from(seq).expect("a positive seq"),
                    id.map(|id| id.parse().expect("a mutation id")),
                )
            })
            .collect();
        let head: i64 = sqlx::query_scalar("SELECT seq FROM head")
            .fetch_one(&pool)
            .await
            .expect("read the head");
        let mut outcomes: HashMap<Uuid, Vec<MutationOutcome>> = HashMap::new();
        for row in sqlx::query("SELECT mutation_id, outcome FROM mutations")
            .fetch_all(&pool)
            .await
            .expect("read the outcomes")
        {
            let id: String = row.get("mutation_id");
            let outcome: String = row.get("outcome");
            outcomes
                .entry(id.parse().expect("a mutation id"))
                .or_default()
                .push(serde_json::from_str(&outcome).expect("an outcome"));
        }
        pool.close().await;
        ServerLog {
            changes,
            head: u64::try_from(head).expect("a positive head"),
            outcomes,
        }
    }

    /// The seqs of the changes each mutation made.
    fn seqs_by_mutation(&self) -> HashMap<Uuid, Vec<u64>> {
        let mut by: HashMap<Uuid, Vec<u64>> = HashMap::new();
        for (seq, id) in &self.changes {
            if let Some(id) = id {
                by.entry(*id).or_default().push(*seq);
            }
        }
        by
    }

    /// The log has every seq from 1 to the head, once each.
    fn assert_gap_free(&self) {
        let seqs: Vec<u64> = self.changes.iter().map(|(s, _)| *s).collect();
        let expected: Vec<u64> = (1..=self.head).collect();
        assert!(
            seqs == expected,
            "the server's log is not gap-free: {} rows for head {}",
            seqs.len(),
            self.head
        );
    }

    /// Mutations that made more than one change (none may).
    fn doubled(&self) -> Vec<Uuid> {
        let mut doubled: Vec<Uuid> = self
            .seqs_by_mutation()
            .into_iter()
            .filter(|(_, seqs)| seqs.len() > 1)
            .map(|(id, _)| id)
            .collect();
        doubled.extend(
            self.outcomes
                .iter()
                .filter(|(_, o)| o.len() > 1)
                .map(|(id, _)| *id),
        );
        doubled
    }
}

/// An engine's cache file as it is on disk.
#[derive(Debug)]
struct CacheFile {
    /// The last server seq applied.
    cursor: Option<u64>,
    /// The server's records as the cache has them (the overlay of pending changes apart).
    records: BTreeMap<(RecordKind, Uuid), String>,
    /// The outbox in order; a row that does not decode fails the test (half-written).
    outbox: Vec<(Uuid, Mutation)>,
}

impl CacheFile {
    /// The one cache database under an engine's data dir (`<dir>/<server>/<user>.db`).
    fn find(dir: &Path) -> PathBuf {
        let mut found = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for entry in std::fs::read_dir(&d).expect("read the data dir") {
                let path = entry.expect("a dir entry").path();
                if path.is_dir() {
                    todo.push(path);
                } else if path.extension().is_some_and(|e| e == "db") {
                    found.push(path);
                }
            }
        }
        assert_eq!(found.len(), 1, "one cache in {}: {found:?}", dir.display());
        found.remove(0)
    }

    async fn read(dir: &Path) -> CacheFile {
        let pool = open_db(&CacheFile::find(dir)).await;
        let cursor: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'cursor'")
                .fetch_optional(&pool)
                .await
                .expect("read the cursor");
        let mut records = BTreeMap::new();
        for row in sqlx::query("SELECT body FROM records")
            .fetch_all(&pool)
            .await
            .expect("read the records")
        {
            let record: Record =
                serde_json::from_str(row.get("body")).expect("a cached record decodes");
            records.insert((record.kind(), record.id()), norm(&record));
        }
        let outbox = sqlx::query("SELECT mutation_id, body FROM outbox ORDER BY position")
            .fetch_all(&pool)
            .await
            .expect("read the outbox")
            .iter()
            .map(|row| {
                let id: String = row.get("mutation_id");
                let body: String = row.get("body");
                (
                    id.parse().expect("an outbox row's mutation id decodes"),
                    serde_json::from_str(&body).expect("an outbox row's mutation decodes"),
                )
            })
            .collect();
        pool.close().await;
        CacheFile {
            cursor: cursor.map(|c| c.parse().expect("a numeric cursor")),
            records,
            outbox,
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    if to.exists() {
        std::fs::remove_dir_all(to).expect("clear the copy");
    }
    std::fs::create_dir_all(to).expect("make the copy");
    for entry in std::fs::read_dir(from).expect("read the original") {
        let path = entry.expect("a dir entry").path();
        let target = to.join(path.file_name().expect("a file name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy a file");
        }
    }
}

// ---------------------------------------------------------------------------------------
// The chaos run.

/// How big a chaos run is.
#[derive(Debug, Clone)]
struct Size {
    name: &'static str,
    /// One engine per entry, signed in as that user (a user may run several).
    users: Vec<&'static str>,
    mutations: usize,
    server_kills: usize,
    client_kills: usize,
    /// One step in this many (on average) cuts or restores a random engine's link.
    partition_every: u32,
    /// Longest a kill lasts, in steps.
    down_for: usize,
    converge_within: Duration,
}

impl Size {
    /// `CLINIC_CHAOS_SIZE`: `ci` (the default) or `long`; `CLINIC_CHAOS_MUTATIONS` changes
    /// the number of mutations.
    fn from_env() -> Size {
        let mut size = match std::env::var("CLINIC_CHAOS_SIZE").as_deref() {
            Ok("long") => Size {
                name: "long",
                users: vec![
                    "maria", "olivia", "sam", "reyes", "kim", "dan", "lee", "admin", "olivia",
                    "reyes",
                ],
                mutations: 10_000,
                server_kills: 5,
                client_kills: 5,
                partition_every: 40,
                down_for: 60,
                converge_within: Duration::from_secs(600),
            },
            Ok("ci") | Err(_) => Size {
                name: "ci",
                users: vec!["olivia", "sam", "reyes", "dan"],
                mutations: 300,
                server_kills: 2,
                client_kills: 2,
                partition_every: 20,
                down_for: 20,
                converge_within: Duration::from_secs(120),
            },
            Ok(other) => panic!("CLINIC_CHAOS_SIZE is `ci` or `long`, not `{other}`"),
        };
        if let Ok(n) = std::env::var("CLINIC_CHAOS_MUTATIONS") {
            size.mutations = n.parse().expect("CLINIC_CHAOS_MUTATIONS is a number");
        }
        size
    }
}

/// One client of the chaos run: an engine process (while not killed), its data dir, its
/// link to the server, and what it queued.
#[derive(Debug)]
struct Client {
    user: &'static str,
    dir: PathBuf,
    log: PathBuf,
    link: Proxy,
    cut: bool,
    engine: Option<EngineProcess>,
    /// The step at which a killed engine starts again.
    back_at: usize,
    verdicts: Arc<Mutex<Verdicts>>,
    /// Every change `submit` accepted: its id and kind.
    queued: Vec<(Uuid, String)>,
}

impl Client {
    /// Starts the engine process: signed in the first time, resumed after a kill. A resumed
    /// engine is kept off the network until it has subscribed, so that no verdict on a
    /// change of the killed engine goes unreported.
    async fn start(&mut self, login: bool) {
        if !login {
            self.link.cut();
        }
        let engine = EngineProcess::spawn(
            &self.link.url(),
            &self.dir,
            login.then_some(self.user),
            &["serve"],
            &self.log,
            self.verdicts.clone(),
        )
        .await;
        self.engine = Some(engine);
        if !self.cut {
            self.link.restore();
        }
    }

    fn engine(&mut self) -> &mut EngineProcess {
        self.engine.as_mut().expect("a running engine")
    }
}

/// An engine's view as its process sends it.
#[derive(Debug, serde::Deserialize)]
struct ViewRecord {
    record: Record,
    pending: bool,
}

/// Whether the client's engine has sent everything and shows what the server says its
/// user may see: the seq of the snapshot it equals, or how it differs.
async fn converged(client: &mut Client, staffer: &Staffer) -> Result<u64, String> {
    let status = client.engine().ask(json!({ "cmd": "status" })).await;
    if status["pending"].as_u64() != Some(0) {
        return Err(format!("{}: outbox not empty: {status}", client.user));
    }
    let view = client.engine().ask(json!({ "cmd": "view" })).await;
    let records: Vec<ViewRecord> = serde_json::from_value(view["records"].clone()).expect("a view");
    let pending = records.iter().filter(|r| r.pending).count();
    let mine = sorted(records.iter().map(|r| norm(&r.record)));
    let snapshot = staffer.snapshot().await;
    let theirs = snapshot_records(&snapshot);
    if pending > 0 || mine != theirs {
        let only_mine: Vec<&String> = mine.iter().filter(|r| !theirs.contains(r)).collect();
        let only_theirs: Vec<&String> = theirs.iter().filter(|r| !mine.contains(r)).collect();
        return Err(format!(
            "{}: {pending} pending; status {status}\nonly in the cache: {only_mine:#?}\nonly on the server: {only_theirs:#?}",
            client.user
        ));
    }
    Ok(snapshot.seq)
}

/// `count` distinct steps in the middle 80 % of the run.
fn kill_steps(rng: &mut StdRng, mutations: usize, count: usize) -> BTreeSet<usize> {
    let (from, to) = (mutations / 10, (mutations * 9 / 10).max(mutations / 10 + 1));
    let mut steps = BTreeSet::new();
    while steps.len() < count.min(to - from) {
        steps.insert(rng.gen_range(from..to));
    }
    steps
}

/// What a chaos run counts.
#[derive(Debug, Default)]
struct Figures {
    attempted: usize,
    /// By kind of change: queued, refused by the engine, nothing to act on.
    kinds: BTreeMap<String, [usize; 3]>,
    queued: usize,
    refused_locally: usize,
    idle: usize,
    applied: usize,
    applied_unchanged: usize,
    rejected: BTreeMap<String, usize>,
    server_kills: usize,
    client_kills: usize,
    partitions: usize,
    verdicts_seen: usize,
    verdicts_unseen: usize,
    lost: Vec<String>,
    doubled: Vec<String>,
    disagreements: Vec<String>,
    unknown: Vec<String>,
    log_rows: u64,
    converge: Duration,
    run: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_run() {
    let size = Size::from_env();
    let seed = seed("chaos_run");
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut figures = Figures::default();

    let mut server = ServerProcess::start().await;
    let seeded = ServerLog::read(&server.db_path()).await;
    let work = tempfile::tempdir().expect("a temporary directory");
    let mut clients = Vec::new();
    for (i, user) in size.users.iter().enumerate() {
        let mut client = Client {
            user,
            dir: work.path().join(format!("engine-{i}")),
            log: work.path().join(format!("engine-{i}.log")),
            link: Proxy::start(server.addr()).await,
            cut: false,
            engine: None,
            back_at: 0,
            verdicts: Arc::default(),
            queued: Vec::new(),
        };
        client.start(true).await;
        clients.push(client);
    }
    let mut staffers = HashMap::new();
    for user in &size.users {
        if !staffers.contains_key(user) {
            staffers.insert(*user, Staffer::login(&server.url(), user).await);
        }
    }

    let server_kills = kill_steps(&mut rng, size.mutations, size.server_kills);
    let client_kills = kill_steps(&mut rng, size.mutations, size.client_kills);
    let mut server_back_at = None;
    for step in 0..size.mutations {
        if server_back_at == Some(step) {
            server.restart().await;
            server_back_at = None;
        }
        for client in clients.iter_mut() {
            if client.engine.is_none() && client.back_at == step {
                client.start(false).await;
            }
        }
        if server_kills.contains(&step) {
            if !server.is_up() {
                server.restart().await;
            }
            server.kill().await;
            figures.server_kills += 1;
            server_back_at = Some(step + 1 + rng.gen_range(0..size.down_for));
        }
        if client_kills.contains(&step) {
            let running: Vec<usize> = (0..clients.len())
                .filter(|&i| clients[i].engine.is_some())
                .collect();
            let &i = running.choose(&mut rng).expect("a running engine");
            let engine = clients[i].engine.take().expect("running");
            engine.kill().await;
            figures.client_kills += 1;
            clients[i].back_at = step + 1 + rng.gen_range(0..size.down_for);
        }
        if rng.gen_range(0..size.partition_every) == 0 {
            let client = clients.choose_mut(&mut rng).expect("a client");
            client.cut = !client.cut;
            if client.cut {
                client.link.cut();
                figures.partitions += 1;
            } else {
                client.link.restore();
            }
        }
        let running: Vec<usize> = (0..clients.len())
            .filter(|&i| clients[i].engine.is_some())
            .collect();
        let &i = running.choose(&mut rng).expect("a running engine");
        let act = json!({ "cmd": "act", "seed": rng.gen::<u64>(), "tag": format!("{step}") });
        let answer = clients[i].engine().ask(act).await;
        figures.attempted += 1;
        let what = answer["what"].as_str().unwrap_or("nothing").to_owned();
        let kind = figures.kinds.entry(what.clone()).or_default();
        match answer["reply"].as_str() {
            Some("queued") => {
                kind[0] += 1;
                clients[i].queued.push((parse_id(&answer["id"]), what));
                figures.queued += 1;
            }
            Some("refused") => {
                kind[1] += 1;
                figures.refused_locally += 1;
            }
            Some("idle") => {
                kind[2] += 1;
                figures.idle += 1;
            }
            _ => panic!("{}: unexpected answer {answer}", clients[i].user),
        }
        if step % 1000 == 999 {
            eprintln!("chaos_run: {} steps in {:.0?}", step + 1, started.elapsed());
        }
    }

    // Heal: everything up, every link restored; then every engine must converge.
    if !server.is_up() {
        server.restart().await;
    }
    for client in clients.iter_mut() {
        client.cut = false;
        if client.engine.is_none() {
            client.start(false).await;
        }
        client.link.restore();
    }
    let healed = Instant::now();
    // Converged: in one pass, every engine has sent everything and equals the server's
    // snapshot for its user, every snapshot at the same seq (so nobody sent anything
    // during the pass that another had not yet received).
    loop {
        let mut pass = Ok(BTreeSet::new());
        for client in clients.iter_mut() {
            match converged(client, &staffers[client.user]).await {
                Ok(seq) => {
                    if let Ok(seqs) = &mut pass {
                        seqs.insert(seq);
                    }
                }
                Err(why) => {
                    pass = Err(why);
                    break;
                }
            }
        }
        match pass {
            Ok(seqs) if seqs.len() == 1 => break,
            Ok(seqs) => assert!(
                healed.elapsed() < size.converge_within,
                "the server kept changing after healing (seed {seed}): {seqs:?}"
            ),
            Err(why) => assert!(
                healed.elapsed() < size.converge_within,
                "not converged {:?} after healing (seed {seed}): {why}\n{}",
                size.converge_within,
                server.log_tail(20)
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    figures.converge = healed.elapsed();

    // Every engine converged; stop everything and read the server's own records.
    for client in clients.iter_mut() {
        if let Some(engine) = client.engine.take() {
            engine.kill().await;
        }
    }
    server.kill().await;
    let log = ServerLog::read(&server.db_path()).await;
    log.assert_gap_free();
    figures.log_rows = log.head;
    check(&clients, &log, &seeded, &mut figures);
    figures.run = started.elapsed();

    let report = report(&size, seed, &figures);
    eprintln!("{report}");
    if let Ok(path) = std::env::var("CLINIC_CHAOS_REPORT") {
        write_report(Path::new(&path), &report);
    }
    assert!(
        figures.lost.is_empty(),
        "lost (seed {seed}): {:#?}",
        figures.lost
    );
    assert!(
        figures.doubled.is_empty(),
        "doubled (seed {seed}): {:#?}",
        figures.doubled
    );
    assert!(
        figures.disagreements.is_empty(),
        "an engine was told otherwise than the server recorded (seed {seed}): {:#?}",
        figures.disagreements
    );
    assert!(
        figures.unknown.is_empty(),
        "changes nobody queued (seed {seed}): {:#?}",
        figures.unknown
    );
    assert!(figures.queued > 0, "the run queued nothing");
}

/// Holds every change the engines queued against what the server recorded.
fn check(clients: &[Client], log: &ServerLog, seeded: &ServerLog, figures: &mut Figures) {
    let made = log.seqs_by_mutation();
    figures.doubled = log
        .doubled()
        .iter()
        .map(|id| format!("{id}: {:?} / {:?}", made.get(id), log.outcomes.get(id)))
        .collect();
    let mut queued = HashMap::new();
    for client in clients {
        let verdicts = lock(&client.verdicts);
        for (id, what) in &client.queued {
            queued.insert(*id, client.user);
            let confirmed = verdicts.confirmed.get(id).copied().unwrap_or(0);
            let rejected = verdicts.rejected.get(id).cloned().unwrap_or_default();
            let told = confirmed as usize + rejected.len();
            if told > 1 {
                figures.doubled.push(format!(
                    "{id} ({what}, {}): told {confirmed} confirmations and rejections {rejected:?}",
                    client.user
                ));
            }
            if told == 0 {
                figures.verdicts_unseen += 1;
            } else {
                figures.verdicts_seen += 1;
            }
            let outcome = log.outcomes.get(id).and_then(|o| o.first());
            match outcome {
                None => figures.lost.push(format!(
                    "{id} ({what}, {}): queued, but the server has no verdict",
                    client.user
                )),
                Some(MutationOutcome::Applied { seq, .. }) => {
                    match made.get(id).map(Vec::as_slice) {
                        Some([only]) if only == seq => figures.applied += 1,
                        // Marking read a message already read changes nothing, logs nothing.
                        None if what == "MarkRead" => figures.applied_unchanged += 1,
                        other => figures.lost.push(format!(
                            "{id} ({what}, {}): applied at {seq}, in the log at {other:?}",
                            client.user
                        )),
                    }
                    if !rejected.is_empty() {
                        figures.disagreements.push(format!(
                            "{id} ({what}, {}): applied, but the engine said rejected {rejected:?}",
                            client.user
                        ));
                    }
                }
                Some(MutationOutcome::Rejected { code, .. }) => {
                    *figures
                        .rejected
                        .entry(code.as_str().to_owned())
                        .or_default() += 1;
                    if made.contains_key(id) {
                        figures.doubled.push(format!(
                            "{id} ({what}, {}): rejected, yet in the log",
                            client.user
                        ));
                    }
                    if confirmed > 0 || rejected.iter().any(|c| c != code) {
                        figures.disagreements.push(format!(
                            "{id} ({what}, {}): rejected with {code:?}, the engine said confirmed {confirmed}, rejected {rejected:?}",
                            client.user
                        ));
                    }
                }
            }
        }
        // A verdict on something this client never queued.
        let mine: HashSet<Uuid> = client.queued.iter().map(|(q, _)| *q).collect();
        for id in verdicts.confirmed.keys().chain(verdicts.rejected.keys()) {
            if !mine.contains(id) {
                figures.unknown.push(format!(
                    "{id}: a verdict to {} on nothing it queued",
                    client.user
                ));
            }
        }
    }
    // Every change in the log with a mutation id, and every recorded outcome, comes from
    // the demo seed or from a change an engine queued.
    let on_server: HashSet<&Uuid> = made.keys().chain(log.outcomes.keys()).collect();
    for id in on_server {
        if !queued.contains_key(id) && !seeded.outcomes.contains_key(id) {
            figures
                .unknown
                .push(format!("{id}: on the server, but no engine queued it"));
        }
    }
}

fn report(size: &Size, seed: u64, f: &Figures) -> String {
    let rejected: Vec<String> = f.rejected.iter().map(|(c, n)| format!("{c} {n}")).collect();
    let rejected_total: usize = f.rejected.values().sum();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Size `{}`, seed {seed} (replay: `CLINIC_CHAOS_SEED={seed}`).\n",
        size.name
    );
    let _ = writeln!(s, "| figure | value |\n|---|---:|");
    let rows: Vec<(String, String)> = vec![
        (
            "engines, each a process behind its own proxy".into(),
            format!("{} ({})", size.users.len(), size.users.join(", ")),
        ),
        ("mutations attempted".into(), f.attempted.to_string()),
        (
            "queued by an engine (`submit` returned)".into(),
            f.queued.to_string(),
        ),
        (
            "refused by the engine itself, unsent (its cache already forbade it)".into(),
            f.refused_locally.to_string(),
        ),
        ("nothing of the kind to act on".into(), f.idle.to_string()),
        (
            "by kind: queued / refused by the engine / nothing to act on".into(),
            f.kinds
                .iter()
                .map(|(k, [q, r, i])| format!("{k} {q}/{r}/{i}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "applied by the server, once".into(),
            format!(
                "{} (+{} mark-read of a read message: applied, nothing to log)",
                f.applied, f.applied_unchanged
            ),
        ),
        (
            "rejected by the server with a code, rolled back".into(),
            format!("{rejected_total} ({})", rejected.join(", ")),
        ),
        (
            "server SIGKILLs (restarted on the same database and port)".into(),
            f.server_kills.to_string(),
        ),
        (
            "engine SIGKILLs (restarted with `Engine::resume`)".into(),
            f.client_kills.to_string(),
        ),
        ("partitions (a proxy cut)".into(), f.partitions.to_string()),
        (
            "verdicts the engines reported / not seen (killed between recording and telling)"
                .into(),
            format!("{} / {}", f.verdicts_seen, f.verdicts_unseen),
        ),
        ("**lost**".into(), format!("**{}**", f.lost.len())),
        ("**doubled**".into(), format!("**{}**", f.doubled.len())),
        (
            "server log".into(),
            format!("{} changes, gap-free", f.log_rows),
        ),
        (
            "time to converge after healing".into(),
            format!("{:.1} s", f.converge.as_secs_f64()),
        ),
        ("run time".into(), format!("{:.0} s", f.run.as_secs_f64())),
    ];
    for (k, v) in rows {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    s
}

/// Replaces the results section of RELIABILITY.md (between `<!-- chaos:start -->` and
/// `<!-- chaos:end -->`) with `figures`, the date, the command and the machine.
fn write_report(path: &Path, figures: &str) {
    const START: &str = "<!-- chaos:start -->";
    const END: &str = "<!-- chaos:end -->";
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let (Some(a), Some(b)) = (text.find(START), text.find(END)) else {
        panic!("{} has no {START} ... {END} section", path.display());
    };
    let section = format!(
        "Run on {} with `cargo xtask chaos` (debug build).\n\nMachine: {}.\n\n{figures}",
        chrono::Local::now().format("%Y-%m-%d"),
        machine()
    );
    let updated = format!(
        "{}{START}\n{section}{END}{}",
        &text[..a],
        &text[b + END.len()..]
    );
    std::fs::write(path, updated).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// The OS, CPU model, core count and memory, from /etc/os-release and /proc.
fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map_or("unknown OS".into(), |n| n.trim_matches('"').to_owned());
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("unknown CPU".into(), |r| {
            r.trim_start_matches([' ', '\t', ':']).to_owned()
        });
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .map_or("unknown".into(), |kib| {
            format!("{} GiB", kib / (1024 * 1024))
        });
    format!("{os}, {cpu}, {cores} cores, {mem} RAM")
}

// ---------------------------------------------------------------------------------------
// Client crash consistency.

fn fast(mut config: EngineConfig) -> EngineConfig {
    config.timing = Timing {
        dead_after: Duration::from_secs(3),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(300),
    };
    config.request_timeout = Duration::from_secs(3);
    config
}

fn view_records(view: &View) -> Vec<String> {
    sorted(view.records.iter().map(|r| norm(&r.record)))
}

/// Waits until `engine` has sent everything and equals what the server shows `user`.
async fn converge(engine: &Engine, server: &TestServer, user: &str) {
    let until = Instant::now() + DEADLINE * 3;
    loop {
        let view = engine.view_at().await.expect("a view");
        let theirs = snapshot_records(&server.snapshot(user).await);
        if view.records.iter().all(|r| !r.pending) && view_records(&view) == theirs {
            return;
        }
        assert!(
            Instant::now() < until,
            "{user}'s cache did not converge; status {:?}",
            *engine.status().borrow()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One change the test made on the server, as the log has it.
type Logged = (RecordKind, Uuid, Option<Record>);

/// What `user`'s cache must hold at server seq `upto`: the cache at `base` with every
/// change in `log` up to `upto` that concerns the user, and none after.
fn records_at(
    base: &BTreeMap<(RecordKind, Uuid), String>,
    log: &BTreeMap<u64, Logged>,
    upto: u64,
    user: &Staff,
) -> BTreeMap<(RecordKind, Uuid), String> {
    let mut records = base.clone();
    for (kind, id, record) in log.range(..=upto).map(|(_, l)| l) {
        match record {
            Some(r) if rules::visible_to(user, r) => {
                records.insert((*kind, *id), norm(r));
            }
            _ => {
                records.remove(&(*kind, *id));
            }
        }
    }
    records
}

/// Sam (a scheduler, who sees every slot) is away while thousands of changes are made:
/// slots created, edited and deleted, messages to him and between others (which move his
/// cursor without touching his records). His engine process is killed at random moments
/// while it catches up, round after round, each starting from the cache the last kill
/// left. After every kill the cache must hold exactly the changes up to its cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_catch_up_leaves_a_cursor_that_matches_the_cache() {
    let mut rng = StdRng::seed_from_u64(seed("catch-up"));
    let server = TestServer::start().await;
    let link = Proxy::start(server.addr()).await;
    let home = tempfile::tempdir().expect("a temporary directory");
    let (dir, pristine) = (home.path().join("engine"), home.path().join("pristine"));
    let sam = Engine::login(fast(EngineConfig::new(&link.url(), &dir)), "sam", "demo")
        .await
        .expect("sam signs in");
    sam.shutdown().await;
    drop(sam);
    copy_dir(&dir, &pristine);
    let base = CacheFile::read(&pristine).await;
    let start = base.cursor.expect("a cursor after the first snapshot");

    // The changes Sam will have to catch up on, made over HTTP, several at a time.
    let by_sam = server.login("sam").await;
    let olivia = server.login("olivia").await;
    let everyone = by_sam.snapshot().await;
    let sam_user = everyone.user.clone();
    let therapists = [staff_id(&everyone, "reyes"), staff_id(&everyone, "kim")];
    let (sam_id, reyes) = (sam_user.id, staff_id(&everyone, "reyes"));
    let date = chrono::Local::now().date_naive() + chrono::Duration::days(5);
    let at = |h: u32| chrono::NaiveTime::from_hms_opt(h, 0, 0).expect("a time");
    let slots: Vec<Uuid> = (0..1200).map(|_| Uuid::new_v4()).collect();
    let mut phases: Vec<Vec<(Staffer, Mutation)>> = Vec::new();
    phases.push(
        slots
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                let slot = clinic_protocol::NewSlot {
                    id,
                    staff_id: therapists[i % 2],
                    date,
                    start: at(8),
                    end: at(9),
                    note: format!("catch-up {i}"),
                };
                (by_sam.clone(), Mutation::CreateSlot { slot })
            })
            .collect(),
    );
    let mut edits: Vec<(Staffer, Mutation)> = slots[..800]
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let edit = Mutation::UpdateSlot {
                id,
                version: 1,
                date,
                start: at(8),
                end: at(10),
                note: format!("catch-up {i}, longer"),
            };
            (by_sam.clone(), edit)
        })
        .collect();
    edits.extend(
        slots[800..1100]
            .iter()
            .map(|&id| (by_sam.clone(), Mutation::DeleteSlot { id, version: 1 })),
    );
    edits.extend((0..700).map(|i| {
        let message = clinic_protocol::NewMessage {
            id: Uuid::new_v4(),
            recipient_id: if i % 7 < 4 { sam_id } else { reyes },
            body: format!("catch-up message {i}"),
        };
        (olivia.clone(), Mutation::SendMessage { message })
    }));
    phases.push(edits);
    let mut log: BTreeMap<u64, Logged> = BTreeMap::new();
    for phase in phases {
        let outcomes: Vec<(Mutation, MutationOutcome)> = futures_util::stream::iter(phase)
            .map(|(who, m)| async move {
                let outcome = who.mutate(m.clone()).await;
                (m, outcome)
            })
            .buffer_unordered(8)
            .collect()
            .await;
        for (m, outcome) in outcomes {
            let MutationOutcome::Applied { seq, record } = outcome else {
                panic!("{m:?} was refused: {outcome:?}");
            };
            let (kind, id) = m.target();
            log.insert(seq, (kind, id, record));
        }
    }
    let head = server.snapshot("sam").await.seq;
    assert_eq!(
        head - start,
        log.len() as u64,
        "the test made every change after the cache's cursor"
    );
    assert_eq!(
        sorted(records_at(&base.records, &log, head, &sam_user).into_values()),
        snapshot_records(&server.snapshot("sam").await),
        "the expected records at the head are what the server shows"
    );

    // Kill the catching-up engine, round after round.
    let log_file = home.path().join("engine.log");
    let mut window = Duration::from_millis(400);
    let mut cursor = start;
    let (mut middle, mut rounds) = (0, 0);
    for round in 0..8 {
        if cursor == head {
            copy_dir(&pristine, &dir);
            cursor = start;
        }
        let verdicts = Arc::default();
        let mut engine =
            EngineProcess::spawn(&link.url(), &dir, None, &["sync"], &log_file, verdicts).await;
        if round % 2 == 0 {
            // At a random moment.
            tokio::time::sleep(window.mul_f64(rng.gen::<f64>())).await;
        } else {
            // Right after the k-th change is applied: the kill lands while the next batch is
            // read, sent or written. Fewer than the records still to change, so it comes.
            let ahead = records_at(&base.records, &log, head, &sam_user);
            let now = records_at(&base.records, &log, cursor, &sam_user);
            let to_change = ahead.iter().filter(|(k, v)| now.get(k) != Some(v)).count()
                + now.keys().filter(|k| !ahead.contains_key(k)).count();
            let k = rng.gen_range(1..=(to_change / 2).max(1));
            for _ in 0..k {
                engine.next().await.expect("a change line");
            }
        }
        engine.kill().await;
        let cache = CacheFile::read(&dir).await;
        let at_kill = cache.cursor.expect("a cursor");
        assert!(
            (cursor..=head).contains(&at_kill),
            "round {round}: the cursor {at_kill} went back from {cursor} or beyond the head {head}"
        );
        assert!(
            cache.records == records_at(&base.records, &log, at_kill, &sam_user),
            "round {round}: killed at cursor {at_kill} (from {cursor}, head {head}), the cache \
             does not hold exactly the changes up to its cursor"
        );
        assert!(cache.outbox.is_empty(), "round {round}: nothing was queued");
        rounds += 1;
        eprintln!(
            "catch-up: round {round}: from {} killed at {} of {}",
            cursor - start,
            at_kill - start,
            head - start
        );
        if at_kill == head {
            window = window.mul_f64(0.6).max(Duration::from_millis(10));
        } else if at_kill == cursor {
            window = window.mul_f64(1.5);
        } else {
            middle += 1;
        }
        cursor = at_kill;
    }
    eprintln!("catch-up: {rounds} kills, {middle} of them in the middle of the catch-up");

    // Resumed from whatever the last kill left, it converges: no gap, no duplicate.
    let sam = Engine::resume(fast(EngineConfig::new(&link.url(), &dir)))
        .await
        .expect("resume");
    converge(&sam, &server, "sam").await;
    sam.shutdown().await;
    drop(sam);
    let cache = CacheFile::read(&dir).await;
    assert_eq!(cache.cursor, Some(head), "caught up to the head");
    assert!(cache.records == records_at(&base.records, &log, head, &sam_user));
}

/// How many times each note of this test's slots ("round ...") is on the server.
async fn round_slots(server: &TestServer) -> HashMap<String, usize> {
    let mut on_server: HashMap<String, usize> = HashMap::new();
    for r in &server.snapshot("sam").await.records {
        match r {
            Record::Slot(s) if s.note.starts_with("round ") => {
                *on_server.entry(s.note.clone()).or_default() += 1;
            }
            _ => {}
        }
    }
    on_server
}

/// Sam's engine process queues availability as fast as it can and is killed at a random
/// moment, round after round: offline (everything stays in the outbox) and online (the
/// engine sends while it queues). After every kill, every change whose `submit` returned
/// is in the outbox or on the server, at most one more (the one being submitted), with no
/// gap and nothing twice; every outbox row decodes; a resumed engine shows them pending.
/// At the end, online, everything lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_submits_leave_an_intact_outbox() {
    let mut rng = StdRng::seed_from_u64(seed("submits"));
    let server = TestServer::start().await;
    let link = Proxy::start(server.addr()).await;
    let home = tempfile::tempdir().expect("a temporary directory");
    let dir = home.path().join("engine");
    let config = fast(EngineConfig::new(&link.url(), &dir));
    let sam = Engine::login(config.clone(), "sam", "demo")
        .await
        .expect("sam signs in");
    sam.shutdown().await;
    drop(sam);
    let reyes = staff_id(&server.snapshot("sam").await, "reyes").to_string();
    let log_file = home.path().join("engine.log");
    const COUNT: usize = 200;
    let note_of = |m: &Mutation| match m {
        Mutation::CreateSlot { slot } => slot.note.clone(),
        other => panic!("only slots are queued here: {other:?}"),
    };
    let mut made: Vec<(String, usize)> = Vec::new();
    for round in 0..6 {
        let online = round % 2 == 1;
        if online {
            link.restore();
        } else {
            link.cut();
        }
        let prefix = format!("round {round}");
        let count = COUNT.to_string();
        let mode = [
            "submit",
            "--count",
            count.as_str(),
            "--prefix",
            prefix.as_str(),
            "--staff",
            reyes.as_str(),
        ];
        let mut engine =
            EngineProcess::spawn(&link.url(), &dir, None, &mode, &log_file, Arc::default()).await;
        let mut lines = Vec::new();
        if rng.gen_bool(0.5) {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..100))).await;
        } else {
            let k = rng.gen_range(1..COUNT * 3 / 4);
            while lines
                .iter()
                .filter(|l: &&Value| l.get("queued").is_some())
                .count()
                < k
            {
                lines.push(engine.next().await.expect("a line"));
            }
        }
        lines.extend(engine.kill().await);
        link.cut();
        let returned: Vec<(usize, Uuid)> = lines
            .iter()
            .filter(|l| l.get("queued").is_some())
            .map(|l| {
                let i = l["queued"].as_u64().expect("an index");
                (usize::try_from(i).expect("small"), parse_id(&l["id"]))
            })
            .collect();

        // On disk: every outbox row decodes (or `read` fails the test).
        let cache = CacheFile::read(&dir).await;
        let mut in_outbox: HashMap<String, Uuid> = HashMap::new();
        for (id, m) in &cache.outbox {
            let note = note_of(m);
            assert!(
                in_outbox.insert(note.clone(), *id).is_none(),
                "round {round}: {note} is in the outbox twice"
            );
        }
        let on_server = round_slots(&server).await;
        assert!(
            on_server.values().all(|n| *n == 1),
            "round {round}: a slot twice on the server"
        );
        let note = |i: usize| format!("{prefix} #{i}");
        let committed = (1..=COUNT)
            .take_while(|&i| in_outbox.contains_key(&note(i)) || on_server.contains_key(&note(i)))
            .count();
        assert!(
            (committed + 1..=COUNT)
                .all(|i| !in_outbox.contains_key(&note(i)) && !on_server.contains_key(&note(i))),
            "round {round}: a gap: {committed} changes in a row, then more"
        );
        assert!(
            committed == returned.len() || committed == returned.len() + 1,
            "round {round}: {} submits returned, {committed} are in the outbox or on the server",
            returned.len()
        );
        for (i, id) in &returned {
            match in_outbox.get(&note(*i)) {
                Some(queued) => assert_eq!(queued, id, "round {round}: #{i}'s mutation id"),
                None => assert!(
                    online && on_server.contains_key(&note(*i)),
                    "round {round}: #{i} returned from submit but is neither in the outbox nor on the server"
                ),
            }
        }

        // What the app would see, resumed offline: the outbox pending, each change shown.
        let engine = Engine::resume(config.clone())
            .await
            .expect("resume offline");
        assert_eq!(
            engine.status().borrow().pending as usize,
            cache.outbox.len(),
            "round {round}: the resumed engine's outbox"
        );
        let view = engine.view_at().await.expect("a view");
        for (_, m) in &cache.outbox {
            let (kind, id) = m.target();
            assert!(
                view.records
                    .iter()
                    .any(|r| r.record.kind() == kind && r.record.id() == id),
                "round {round}: {} is queued but not shown",
                note_of(m)
            );
        }
        engine.shutdown().await;
        drop(engine);
        eprintln!(
            "submits: round {round} ({}): killed after {} returned, {committed} committed, {} in the outbox",
            if online { "online" } else { "offline" },
            returned.len(),
            cache.outbox.len()
        );
        made.push((prefix, committed));
    }

    // Back online: everything lands, once.
    link.restore();
    let engine = Engine::resume(config).await.expect("resume");
    converge(&engine, &server, "sam").await;
    engine.shutdown().await;
    let on_server = round_slots(&server).await;
    for (prefix, committed) in &made {
        for i in 1..=COUNT {
            let expected = usize::from(i <= *committed);
            assert_eq!(
                on_server
                    .get(&format!("{prefix} #{i}"))
                    .copied()
                    .unwrap_or(0),
                expected,
                "{prefix} #{i} on the server"
            );
        }
    }
    let log = ServerLog::read(server.db_path()).await;
    log.assert_gap_free();
    assert!(log.doubled().is_empty(), "doubled: {:?}", log.doubled());
}
