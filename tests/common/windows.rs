//! What the window benchmarks (tests/window_latency.rs, tests/window_growth.rs) share:
//! waiting for the set of open windows, opening and closing dashboards as a user does, the
//! app's processes and their memory, and the summary of a sample set.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::{json, Value};

use super::{poll, App, DEADLINE};

/// The windows' ready flag, set once a dashboard has rendered its first view.
pub const READY: &str = "return document.body.dataset.ready === 'true'";

/// Polls the open windows' labels until `ok` holds; returns them.
pub async fn wait_labels(app: &mut App, what: &str, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let labels = app.labels().await;
        if ok(&labels) {
            return labels;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}; open: {labels:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens `count` new dashboards of `kind` at once through the backend, as the Window menu
/// does, from the window `from`; returns their labels once their pages are ready.
pub async fn open_windows(app: &mut App, from: &str, kind: &str, count: usize) -> Vec<String> {
    let before = app.labels().await;
    app.eval(
        from,
        "for (let i = 0; i < arguments[1]; i++) {
           window.__TAURI__.core.invoke('open_window', { kind: arguments[0] });
         }
         return true",
        vec![json!(kind), json!(count)],
    )
    .await;
    let prefix = format!("{kind}-");
    let new = |labels: &[String]| -> Vec<String> {
        labels
            .iter()
            .filter(|l| l.starts_with(&prefix) && !before.contains(l))
            .cloned()
            .collect()
    };
    let labels = wait_labels(app, &format!("{count} new {kind} windows"), |l| {
        new(l).len() == count
    })
    .await;
    let opened = new(&labels);
    for label in &opened {
        app.window(label).await;
    }
    opened
}

/// Closes a window with its Window menu's "Close window" (as its title bar's close button
/// would; WebDriver's own close only drops the page from the session when windows share a
/// web process) and waits until it is gone.
pub async fn close_window(app: &mut App, label: &str) {
    let client = app.window(label).await;
    let find = |css: &'static str| async move {
        client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} in {label}: {e}"))
    };
    find(".menu-toggle")
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("open the Window menu of {label}: {e}"));
    // The window may be gone before WebDriver answers the click, which it then reports as
    // an error: whether it closed is checked below.
    let _ = find(".menu-item.close-window").await.click().await;
    wait_labels(app, &format!("{label} to close"), |l| {
        !l.iter().any(|l| l == label)
    })
    .await;
}

/// The app's resident memory in KiB once exactly `windows` are open and ready, with its
/// web processes (the app's windows share one; the caller checks how many there are).
pub async fn settled_memory(app: &mut App, pid: u32, windows: &[String]) -> Memory {
    let mut want = windows.to_vec();
    want.sort();
    wait_labels(app, "exactly the measured windows", |l| l == want).await;
    for w in windows {
        app.wait_for(w, "the window to be ready", READY).await;
    }
    let (tree, web) = poll(
        &format!(
            "at most one web process for each of {} windows",
            windows.len()
        ),
        || async move {
            let tree = process_tree(pid);
            let web = tree
                .iter()
                .filter(|p| p.name.starts_with("WebKitWebProces"))
                .count();
            (1..=windows.len()).contains(&web).then_some((tree, web))
        },
    )
    .await;
    Memory {
        rss_kib: tree.iter().map(|p| p.rss_kib).sum(),
        pss_kib: tree.iter().map(|p| p.pss_kib).sum(),
        backend_pss_kib: tree.iter().find(|p| p.pid == pid).map_or(0, |p| p.pss_kib),
        web_processes: web,
    }
}

/// The pid of this test's app: the process running the app binary whose environment or
/// command line carries this test's own data directory.
pub fn app_pid(data_dir: &Path) -> u32 {
    let binary = std::fs::canonicalize(super::app_binary()).expect("app binary");
    let mark = data_dir.display().to_string();
    let found: Vec<u32> = pids()
        .into_iter()
        .filter(|pid| {
            let proc = PathBuf::from(format!("/proc/{pid}"));
            std::fs::read_link(proc.join("exe")).is_ok_and(|exe| exe == binary)
                && ["environ", "cmdline"].iter().any(|f| {
                    std::fs::read(proc.join(f)).is_ok_and(|bytes| {
                        bytes
                            .split(|b| *b == 0)
                            .any(|s| String::from_utf8_lossy(s).contains(&mark))
                    })
                })
        })
        .collect();
    assert_eq!(found.len(), 1, "one app process for {mark}: {found:?}");
    found[0]
}

pub fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The app's memory, summed over its processes, in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// VmRSS: what the benchmark reports.
    pub rss_kib: u64,
    /// Proportional set size: pages shared between processes (WebKit's and the graphics
    /// stack's libraries) divided among them, where VmRSS counts them once per process.
    /// Printed for comparison.
    pub pss_kib: u64,
    /// The app's own process (its backend: engine, cache, windows' IPC), without WebKit's:
    /// what grows with the cache shows here.
    pub backend_pss_kib: u64,
    /// WebKit web processes.
    pub web_processes: usize,
}

/// One process of the app.
#[derive(Debug)]
pub struct Proc {
    pub pid: u32,
    pub name: String,
    pub rss_kib: u64,
    pub pss_kib: u64,
}

/// `pid` and all its descendants. Processes that exit while being read are skipped.
pub fn process_tree(pid: u32) -> Vec<Proc> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in pids() {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(p);
        }
    }
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        todo.extend(children.get(&p).into_iter().flatten().copied());
        let Ok(status) = std::fs::read_to_string(format!("/proc/{p}/status")) else {
            continue;
        };
        let name = field(&status, "Name:").unwrap_or_default().to_owned();
        let Some(rss_kib) = field(&status, "VmRSS:").and_then(kib) else {
            continue; // A zombie: no memory left.
        };
        let pss_kib = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup"))
            .ok()
            .and_then(|s| field(&s, "Pss:").and_then(kib))
            .unwrap_or(0);
        out.push(Proc {
            pid: p,
            name,
            rss_kib,
            pss_kib,
        });
    }
    out
}

/// The value of a "Name:   value" line.
pub fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
}

/// "123 kB" as 123.
pub fn kib(value: &str) -> Option<u64> {
    value.strip_suffix("kB")?.trim().parse().ok()
}

/// n, p50, p99, max of a sample set: nearest rank (p99 is the value at index
/// ceil(0.99 n) - 1 of the sorted samples).
pub fn summary(ms: &[f64]) -> (usize, f64, f64, f64) {
    let mut sorted = ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return (0, f64::NAN, f64::NAN, f64::NAN);
    }
    let rank = |q: f64| sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    (n, rank(0.50), rank(0.99), sorted[n - 1])
}

pub fn summary_json(ms: &[f64]) -> Value {
    let (n, p50, p99, max) = summary(ms);
    json!({ "n": n, "p50_ms": p50, "p99_ms": p99, "max_ms": max })
}

/// When process `pid` started, in epoch milliseconds (the pages' clock, ui/js/probes.js),
/// to within a clock tick (10 ms). /proc gives the start in ticks since boot; the boot's
/// epoch time is now minus /proc/uptime (btime in /proc/stat is whole seconds only).
pub fn process_started_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the app's stat");
    // "pid (comm) state ...": starttime is the 22nd field, the 20th after the comm.
    let ticks: f64 = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19))
        .and_then(|s| s.parse().ok())
        .expect("starttime in /proc/<pid>/stat");
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|u| u.split_whitespace().next()?.parse().ok())
        .expect("/proc/uptime");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    // USER_HZ is 100 on every Linux architecture the app is built for.
    (now - uptime + ticks / 100.0) * 1000.0
}

/// The page time (epoch ms) of the first render of window `label`'s dashboard, from its
/// latency probes (the app runs with `--measure`).
pub async fn first_render(app: &mut App, label: &str) -> f64 {
    app.wait_for(
        label,
        "the first render's probe",
        "const r = window.__clinic && window.__clinic.renders; return r && r.length ? r[0].t : null",
    )
    .await
    .as_f64()
    .unwrap_or_else(|| panic!("the first render of {label} has no time"))
}

/// Wraps `renders.push` so that every render also looks at the watched booking's row: the
/// render that first shows the new status is the one that shows THIS click's change,
/// whatever else was rendered around it. `arm` starts watching a row for a status, empties
/// the probe arrays (so they stay small over hundreds of clicks) and returns the row's
/// status now. Idempotent.
pub const INSTALL: &str = "
const c = window.__clinic;
if (!c.bench) {
  const push = Array.prototype.push;
  c.bench = {
    watch: null,
    arm(css, status) {
      c.actions.length = 0;
      c.renders.length = 0;
      c.bench.watch = { css, status, shown: null, entry: null, confirmed: null, done: null };
      const row = document.querySelector(css);
      return row ? row.dataset.status : null;
    },
  };
  c.renders.push = function (...items) {
    const n = push.apply(this, items);
    const w = c.bench.watch;
    if (w && w.confirmed === null && items.length) {
      const row = document.querySelector(w.css);
      if (row && row.dataset.status === w.status) {
        const entry = items[items.length - 1];
        if (w.shown === null) {
          w.shown = entry.t;
          w.entry = entry;
        }
        if (row.dataset.pending === 'false') {
          w.confirmed = entry.t;
          if (w.done) w.done();
        }
      }
    }
    return n;
  };
}
return true";

/// Arms the first watch: `arm(css, status)`.
pub const ARM: &str = "return window.__clinic.bench.arm(arguments[0], arguments[1])";

/// An async WebDriver script that resolves once the watched change is rendered as
/// confirmed, with the click's time if this is the window where the click happened, and
/// then arms the next watch (`arguments[0]`, or null) before the next click can happen.
/// Event-driven: it sends nothing while it waits, so waiting does not load the windows
/// being measured, and arming costs no round trip of its own.
pub const SETTLED: &str = "
const next = arguments[0];
const done = arguments[arguments.length - 1];
const c = window.__clinic;
const w = c.bench.watch;
const finish = () => {
  const out = {
    actions: c.actions.length,
    t: c.actions.length ? c.actions[0].t : null,
    submitted: c.actions.length ? c.actions[0].submitted : null,
    shown: w.shown,
    entry: w.entry,
    confirmed: w.confirmed,
    next: null,
  };
  if (next) out.next = c.bench.arm(next.css, next.status);
  done(out);
};
if (w.confirmed !== null) finish();
else w.done = finish";
