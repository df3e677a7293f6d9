//! How a change is followed from its writer to every receiver: each carries a marker
//! (`bench <phase> <n>` in the booking's notes), the writer notes when it sent change `n`,
//! and a receiver records now minus that into the phase's histogram. Writer and receivers
//! share this process, so one monotonic clock serves both.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clinic_protocol::{Change, ChangeOp, Record};

use crate::hist::Histogram;

pub(crate) const MAX_PHASES: usize = 128;

#[derive(Debug)]
pub(crate) struct Probe {
    epoch: Instant,
    sent: Vec<AtomicU64>,
    next: AtomicU64,
    phases: Vec<Phase>,
    next_phase: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Phase {
    pub(crate) latency: Histogram,
    pub(crate) delivered: AtomicU64,
    /// When the last delivery of this phase arrived (ns since the epoch).
    last_delivery: AtomicU64,
}

impl Probe {
    /// Room for `capacity` changes over the whole run.
    pub(crate) fn new(capacity: usize) -> Probe {
        Probe {
            epoch: Instant::now(),
            sent: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            next: AtomicU64::new(0),
            phases: (0..MAX_PHASES)
                .map(|_| Phase {
                    latency: Histogram::new(),
                    delivered: AtomicU64::new(0),
                    last_delivery: AtomicU64::new(0),
                })
                .collect(),
            next_phase: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A fresh phase: its own histogram and delivery count.
    pub(crate) fn phase(&self) -> usize {
        let p = self.next_phase.fetch_add(1, Ordering::Relaxed) as usize;
        assert!(p < MAX_PHASES, "more phases than the probe has room for");
        p
    }

    pub(crate) fn stats(&self, phase: usize) -> &Phase {
        &self.phases[phase]
    }

    /// Takes the next change number and notes that it is being sent now; returns the marker
    /// to put in it.
    pub(crate) fn send(&self, phase: usize) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        assert!(
            n < self.sent.len(),
            "more changes than the probe has room for"
        );
        self.sent[n].store(self.now(), Ordering::Relaxed);
        format!("bench {phase} {n}")
    }

    /// Records the arrival of the change carrying `marker`, if it carries one.
    pub(crate) fn received(&self, marker: &str) {
        let mut parts = marker.split(' ');
        let (Some("bench"), Some(phase), Some(n)) = (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        let (Ok(phase), Ok(n)) = (phase.parse::<usize>(), n.parse::<usize>()) else {
            return;
        };
        let (Some(p), Some(sent)) = (self.phases.get(phase), self.sent.get(n)) else {
            return;
        };
        let now = self.now();
        let sent = sent.load(Ordering::Relaxed);
        p.latency
            .record(Duration::from_nanos(now.saturating_sub(sent)));
        p.delivered.fetch_add(1, Ordering::Relaxed);
        p.last_delivery.fetch_max(now, Ordering::Relaxed);
    }

    /// The marker a change carries, if it is a booking with one.
    pub(crate) fn marker(change: &Change) -> Option<&str> {
        match &change.op {
            ChangeOp::Upsert {
                record: Record::Booking(b),
            } => Some(b.notes.as_str()),
            _ => None,
        }
    }

    /// The instant, as elapsed since the epoch, of the phase's last delivery.
    pub(crate) fn last_delivery(&self, phase: usize) -> Duration {
        Duration::from_nanos(self.phases[phase].last_delivery.load(Ordering::Relaxed))
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.epoch.elapsed()
    }
}

impl Phase {
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
}
