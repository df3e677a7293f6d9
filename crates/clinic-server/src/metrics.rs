//! What the server counts, and `GET /metrics`, its Prometheus text exposition.
//!
//! Every counter is an atomic in [`Metrics`] (one per server, shared by `AppState`, the
//! store's writer task and the feeds), so counting costs a relaxed atomic add and never a
//! lock. Every label set is fixed at compile time: error codes come from [`ErrorCode`],
//! resync reasons from [`ResyncReason`], sign-in results and status classes from enums
//! here, never from what a client sent. So the exposition has the same series, in the same
//! order, from the first scrape on, and its size (a few KiB) does not grow with traffic.
//!
//! The text is written by hand (version 0.0.4 of the format, the one every Prometheus
//! reads): a dozen metrics do not justify a metrics crate and its registry.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `clinic_feeds_open` | gauge | |
//! | `clinic_head_seq` | gauge | |
//! | `clinic_feed_resyncs_total` | counter | `reason` |
//! | `clinic_mutations_total` | counter | `outcome` (`applied`, `rejected`, `error`), `code` |
//! | `clinic_commit_seconds` | histogram | |
//! | `clinic_feed_send_lag_seconds` | histogram | |
//! | `clinic_sign_ins_total` | counter | `result` |
//! | `clinic_http_responses_total` | counter | `class` (`1xx` to `5xx`) |

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use clinic_protocol::{ErrorCode, MutationOutcome, ResyncReason};

/// Every [`ErrorCode`], in the order the exposition lists them.
const CODES: [ErrorCode; 23] = ErrorCode::ALL;

/// What became of a sign-in (`POST /v1/login`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignIn {
    /// Signed in: a token was issued.
    Ok,
    /// Wrong username or password.
    WrongCredentials,
    /// Refused before any check: too many failures from the address.
    LimitedAddress,
    /// Refused before any check: the username is under attack.
    LimitedUsername,
    /// No password check free in time.
    Busy,
    /// The body did not parse, or the server failed (its log says why).
    Error,
    /// The server has no staff account yet.
    NoStaff,
    /// The right password, of a disabled account.
    Disabled,
}

impl SignIn {
    const ALL: [SignIn; 8] = [
        SignIn::Ok,
        SignIn::WrongCredentials,
        SignIn::LimitedAddress,
        SignIn::LimitedUsername,
        SignIn::Busy,
        SignIn::Error,
        SignIn::NoStaff,
        SignIn::Disabled,
    ];

    fn label(self) -> &'static str {
        match self {
            SignIn::Ok => "ok",
            SignIn::WrongCredentials => "wrong_credentials",
            SignIn::LimitedAddress => "rate_limited_address",
            SignIn::LimitedUsername => "rate_limited_username",
            SignIn::Busy => "busy",
            SignIn::Error => "error",
            SignIn::NoStaff => "no_staff",
            SignIn::Disabled => "account_disabled",
        }
    }
}

/// Upper bounds of the latency histograms' buckets, in seconds: from half a millisecond (a
/// commit without a sync, a feed send on an idle server) to 5 s (a disk in trouble).
const BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A latency histogram with [`BUCKETS`]: lock-free, fixed size.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    /// Observations per bucket (not cumulative; the exposition adds them up); the last one
    /// is above every bound (`+Inf`).
    buckets: [AtomicU64; BUCKETS.len() + 1],
    /// The sum of every observation, in nanoseconds (584 years before it wraps).
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub(crate) fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, help, "histogram");
        let mut cumulative = 0;
        for (i, count) in self.buckets.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            match BUCKETS.get(i) {
                Some(bound) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        // The buckets and the sum are read one after the other, not at one instant: a
        // scrape during an observation may see it in one and not yet in the other, which
        // the next scrape corrects (rates over time are unaffected).
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// Everything the server counts. One per server, shared through an `Arc`.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    resyncs: [AtomicU64; ResyncReason::ALL.len()],
    mutations_applied: AtomicU64,
    /// `MutationOutcome::Rejected`, by code: the rules said no (answered 200).
    mutations_rejected: [AtomicU64; CODES.len()],
    /// Answered with an HTTP error before or instead of an outcome (unauthorized,
    /// malformed, too large, internal), by code.
    mutations_error: [AtomicU64; CODES.len()],
    /// The writer's group commits, from BEGIN to the end of COMMIT.
    pub(crate) commit_seconds: Histogram,
    /// From the end of a change's commit to a feed sending the frame that carries it.
    pub(crate) feed_send_lag_seconds: Histogram,
    sign_ins: [AtomicU64; SignIn::ALL.len()],
    /// HTTP answers by status class, 1xx to 5xx.
    http: [AtomicU64; 5],
}

/// What [`Metrics::render`] reports besides the counters: values read at scrape time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gauges {
    pub(crate) feeds_open: usize,
    pub(crate) head: u64,
}

impl Metrics {
    pub(crate) fn resync(&self, reason: ResyncReason) {
        self.resyncs[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A mutation's answer: an outcome (applied or rejected), or an HTTP error's code.
    pub(crate) fn mutation(&self, answer: Result<&MutationOutcome, ErrorCode>) {
        let counter = match answer {
            Ok(MutationOutcome::Applied { .. }) => &self.mutations_applied,
            Ok(MutationOutcome::Rejected { code, .. }) => &self.mutations_rejected[code.index()],
            Err(code) => &self.mutations_error[code.index()],
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sign_in(&self, result: SignIn) {
        let i = SignIn::ALL.iter().position(|r| *r == result).unwrap_or(0);
        self.sign_ins[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn http_answer(&self, status: StatusCode) {
        // Statuses are 100..=999 by construction; anything above 5xx counts as 5xx.
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.http[class].fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition: every metric, every series, zeros included.
    pub(crate) fn render(&self, gauges: Gauges) -> String {
        let mut out = String::with_capacity(8 * 1024);
        header(
            &mut out,
            "clinic_feeds_open",
            "Feed WebSockets open now (from their upgrade until their last frame).",
            "gauge",
        );
        let _ = writeln!(out, "clinic_feeds_open {}", gauges.feeds_open);
        header(
            &mut out,
            "clinic_head_seq",
            "The seq of the last committed change.",
            "gauge",
        );
        let _ = writeln!(out, "clinic_head_seq {}", gauges.head);

        header(
            &mut out,
            "clinic_feed_resyncs_total",
            "Feeds told to resync (fetch a new snapshot), by reason.",
            "counter",
        );
        for (reason, count) in ResyncReason::ALL.iter().zip(&self.resyncs) {
            sample(
                &mut out,
                "clinic_feed_resyncs_total",
                "reason",
                reason.as_str(),
                count,
            );
        }

        header(
            &mut out,
            "clinic_mutations_total",
            "Mutations answered: applied, rejected by the rules (with the code), or refused \
             with an HTTP error (with the code).",
            "counter",
        );
        let _ = writeln!(
            out,
            "clinic_mutations_total{{outcome=\"applied\"}} {}",
            self.mutations_applied.load(Ordering::Relaxed)
        );
        for (outcome, counters) in [
            ("rejected", &self.mutations_rejected),
            ("error", &self.mutations_error),
        ] {
            for (code, count) in CODES.iter().zip(counters) {
                let _ = writeln!(
                    out,
                    "clinic_mutations_total{{outcome=\"{outcome}\",code=\"{}\"}} {}",
                    code.as_str(),
                    count.load(Ordering::Relaxed)
                );
            }
        }

        self.commit_seconds.write(
            &mut out,
            "clinic_commit_seconds",
            "The writer's group commits, from BEGIN to the end of COMMIT (the disk sync).",
        );
        self.feed_send_lag_seconds.write(
            &mut out,
            "clinic_feed_send_lag_seconds",
            "From a change's commit to a feed sending it live (one observation per frame, \
             for its oldest change).",
        );

        header(
            &mut out,
            "clinic_sign_ins_total",
            "Sign-in attempts, by result.",
            "counter",
        );
        for (result, count) in SignIn::ALL.iter().zip(&self.sign_ins) {
            sample(
                &mut out,
                "clinic_sign_ins_total",
                "result",
                result.label(),
                count,
            );
        }

        header(
            &mut out,
            "clinic_http_responses_total",
            "HTTP answers, by status class.",
            "counter",
        );
        for (class, count) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().zip(&self.http) {
            sample(
                &mut out,
                "clinic_http_responses_total",
                "class",
                class,
                count,
            );
        }
        out
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, label: &str, value: &str, count: &AtomicU64) {
    let _ = writeln!(
        out,
        "{name}{{{label}=\"{value}\"}} {}",
        count.load(Ordering::Relaxed)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_is_cumulative_and_ends_with_inf() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let mut out = String::new();
        h.write(&mut out, "x_seconds", "test");
        assert!(out.contains("x_seconds_bucket{le=\"0.0005\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"5\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_count 3\n"), "{out}");
        assert!(out.contains("x_seconds_sum 60.0033\n"), "{out}");
    }

    #[test]
    fn statuses_fall_in_their_class() {
        let m = Metrics::default();
        for status in [101, 200, 204, 404, 429, 503] {
            m.http_answer(StatusCode::from_u16(status).unwrap());
        }
        let out = m.render(Gauges {
            feeds_open: 0,
            head: 0,
        });
        for (class, count) in [("1xx", 1), ("2xx", 2), ("3xx", 0), ("4xx", 2), ("5xx", 1)] {
            let line = format!("clinic_http_responses_total{{class=\"{class}\"}} {count}\n");
            assert!(out.contains(&line), "{line} in {out}");
        }
    }
}
