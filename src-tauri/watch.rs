//! What each window shows, kept current by the backend: views are read once for every
//! window that shows the same one, and after a change each window is sent what changed in
//! its view (a [`patch`]) on its own channel, with the change batch, so that no window has
//! to ask again.
//!
//! A window loads its view with `load {view, base, updates}`: the answer is the whole view
//! (`{"rev", "data"}`) or, when `base` names a read the backend still keeps, a patch to it
//! (`{"rev", "base", "patch"}`). Reads are numbered (`rev`) across all views. From then on
//! the window is a watcher: every change batch reaches it on `updates` as
//! `{"batch": {from, to, kinds, reset, at, viewsMs}, "view": answer | null}`, the answer being a
//! patch to the read it holds when the batch concerns its view (or the whole view, when
//! that read is no longer kept).
//!
//! Each load brings a new channel and the previous one is dropped (which tells the page's
//! end of it to close): a Tauri channel's Rust side numbers its messages from 0 each time
//! it is taken from a command's arguments, and the page holds back any message whose
//! number it has seen pass, for ever; so one channel is never taken twice.
//!
//! Loads and pushes take the same lock, so a window's read and the batches pushed to it are
//! in one order: a batch pushed after a read is newer than it or marked old (`to <= seq`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use chrono::NaiveDate;
use clinic_sync::Engine;
use serde_json::json;
use tauri::ipc::{Channel, InvokeResponseBody};
use tauri::{AppHandle, Manager};

use crate::error::UiError;
use crate::ipc::{ChangesPayload, ViewRequest};
use crate::patch;
use crate::status::status_payload;
use crate::views;

/// How many different views are kept beyond those windows show (a few per dashboard kind
/// is plenty).
const VIEWS_KEPT: usize = 32;
/// How many reads of one view are kept as bases for patches: every window moves to the
/// newest read at each change, so only one that fell further behind gets the whole view.
const READS_KEPT: usize = 3;

/// The views windows show, and who shows which.
pub struct Watch {
    engine: Engine,
    state: tokio::sync::Mutex<State>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    reads: HashMap<ViewRequest, VecDeque<Read>>,
    next_rev: u64,
    /// By window label.
    watchers: HashMap<String, Watcher>,
}

/// A window, the view it shows, the read it holds and where to send it changes.
struct Watcher {
    request: ViewRequest,
    rev: u64,
    seq: u64,
    updates: Channel<InvokeResponseBody>,
}

/// A view as read at cache sequence `seq` on the clinic's date `today`: read number `rev`,
/// as JSON, and the answers made from it for windows.
struct Read {
    rev: u64,
    seq: u64,
    today: NaiveDate,
    value: serde_json::Value,
    /// `{"rev": .., "data": ..}`, made when a window first needs the whole view.
    whole: Option<Arc<str>>,
    /// `(base, {"rev": .., "base": .., "patch": ..})`.
    patches: Vec<(u64, Arc<str>)>,
}

impl Watch {
    pub fn new(engine: Engine) -> Watch {
        Watch {
            engine,
            state: tokio::sync::Mutex::new(State::default()),
        }
    }

    /// What window `label` shows now, for `request`, as described in the module docs; the
    /// window then gets every change batch on `updates`.
    pub async fn load(
        &self,
        label: &str,
        request: &ViewRequest,
        base: Option<u64>,
        updates: Channel<InvokeResponseBody>,
    ) -> Result<Arc<str>, UiError> {
        let mut state = self.state.lock().await;
        let (seq, today) = (self.engine.queries().seq().await?, local_today());
        if !state.current(request, seq, today) {
            let read = self.read(request.clone(), today).await?;
            state.keep(request, read);
        }
        let (rev, seq, json) = state.reply(request, base);
        state.watchers.insert(
            label.to_owned(),
            Watcher {
                request: request.clone(),
                rev,
                seq,
                updates,
            },
        );
        Ok(json)
    }

    /// Forgets window `label` (it closed): its channel goes, and the reads kept for it
    /// only may go at the next eviction.
    pub async fn forget(&self, label: &str) {
        self.state.lock().await.watchers.remove(label);
    }

    /// Sends `batch` to every watching window, with what changed in its view if the batch
    /// concerns it. Each view is read once, however many windows show it, and different
    /// views are read at the same time. A window that closed without being forgotten
    /// (see [`Watch::forget`]) is dropped here. The batch's `at`
    /// and `views_ms` are filled in here: when it is sent, and how long reading took.
    pub async fn push(&self, app: &AppHandle, mut batch: ChangesPayload) {
        let started = std::time::Instant::now();
        let mut state = self.state.lock().await;
        state
            .watchers
            .retain(|label, _| app.get_webview_window(label).is_some());
        let concerned: Vec<String> = state
            .watchers
            .iter()
            .filter(|(_, w)| {
                !batch.reset
                    && batch.to > w.seq
                    && w.request.kinds().iter().any(|k| batch.kinds.contains(k))
            })
            .map(|(label, _)| label.clone())
            .collect();
        let mut failed: Vec<ViewRequest> = Vec::new();
        if !concerned.is_empty() {
            let today = local_today();
            match self.engine.queries().seq().await {
                Ok(seq) => {
                    let mut stale: Vec<ViewRequest> = Vec::new();
                    for label in &concerned {
                        let request = &state.watchers[label].request;
                        if !state.current(request, seq, today) && !stale.contains(request) {
                            stale.push(request.clone());
                        }
                    }
                    let reads = futures_util::future::join_all(
                        stale.iter().map(|r| self.read(r.clone(), today)),
                    )
                    .await;
                    for (request, read) in stale.into_iter().zip(reads) {
                        match read {
                            Ok(read) => state.keep(&request, read),
                            Err(e) => {
                                tracing::warn!("could not read a view: {e}");
                                failed.push(request);
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!("could not read the cache's sequence: {e}");
                    failed.extend(state.watchers.values().map(|w| w.request.clone()));
                }
            }
        }
        let mut views = Vec::with_capacity(state.watchers.len());
        let labels: Vec<String> = state.watchers.keys().cloned().collect();
        for label in labels {
            let request = state.watchers[&label].request.clone();
            // A window whose view could not be read hears the batch and loads it itself.
            let view = (concerned.contains(&label) && !failed.contains(&request)).then(|| {
                let base = state.watchers[&label].rev;
                let (rev, seq, json) = state.reply(&request, Some(base));
                let w = state.watchers.get_mut(&label).expect("listed above");
                (w.rev, w.seq) = (rev, seq);
                json
            });
            views.push((label, view));
        }
        batch.views_ms = started.elapsed().as_secs_f64() * 1000.0;
        batch.at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        let batch = match serde_json::to_string(&batch) {
            Ok(json) => json,
            Err(e) => {
                tracing::error!("could not send a change batch: {e}");
                return;
            }
        };
        for (label, view) in views {
            let message = format!(
                r#"{{"batch":{batch},"view":{}}}"#,
                view.as_deref().unwrap_or("null")
            );
            let w = &state.watchers[&label];
            if let Err(e) = w.updates.send(InvokeResponseBody::Json(message)) {
                tracing::warn!("could not tell {label} of changes: {e}");
            }
        }
    }

    /// Reads `request` from the cache as of now, as JSON.
    async fn read(&self, request: ViewRequest, today: NaiveDate) -> Result<Read, UiError> {
        let queries = self.engine.queries();
        let status = status_payload(&self.engine);
        let data = views::load(&queries, &self.engine.user(), &request, today, status).await?;
        let value = serde_json::to_value(&data)
            .map_err(|e| UiError::internal("Could not send the view", e))?;
        Ok(Read {
            rev: 0, // numbered when kept
            seq: data.seq,
            today,
            value,
            whole: None,
            patches: Vec::new(),
        })
    }
}

/// The clinic's date now.
fn local_today() -> NaiveDate {
    chrono::Local::now().date_naive()
}

impl State {
    /// Whether the newest read of `request` is as of cache sequence `seq` on `today`.
    fn current(&self, request: &ViewRequest, seq: u64, today: NaiveDate) -> bool {
        self.reads
            .get(request)
            .and_then(|r| r.back())
            .is_some_and(|r| r.seq == seq && r.today == today)
    }

    /// Keeps `read` as the newest read of `request`, numbered.
    fn keep(&mut self, request: &ViewRequest, mut read: Read) {
        if self.reads.len() >= VIEWS_KEPT && !self.reads.contains_key(request) {
            // Views no window shows go; the others are what patches are made from.
            let watchers = &self.watchers;
            self.reads
                .retain(|r, _| watchers.values().any(|w| &w.request == r));
        }
        self.next_rev += 1;
        read.rev = self.next_rev;
        let kept = self.reads.entry(request.clone()).or_default();
        if kept.len() >= READS_KEPT {
            kept.pop_front();
        }
        kept.push_back(read);
    }

    /// The answer to a window holding read `base` of `request` (which has a read kept):
    /// `(rev, seq, json)` of the newest read, whole or as a patch to `base`.
    fn reply(&mut self, request: &ViewRequest, base: Option<u64>) -> (u64, u64, Arc<str>) {
        let kept = self.reads.get_mut(request).expect("a read is kept");
        let last = kept.len() - 1;
        let (older, newest) = kept.make_contiguous().split_at_mut(last);
        let newest = &mut newest[0];
        let (rev, seq) = (newest.rev, newest.seq);
        let old = match base {
            // Nothing changed since the window's read.
            Some(b) if b == rev => {
                let json = json!({ "rev": b, "base": b, "patch": null }).to_string();
                return (rev, seq, json.into());
            }
            Some(b) => older.iter().find(|r| r.rev == b),
            None => None,
        };
        let Some(old) = old else {
            let json = newest
                .whole
                .get_or_insert_with(|| {
                    json!({ "rev": rev, "data": newest.value })
                        .to_string()
                        .into()
                })
                .clone();
            return (rev, seq, json);
        };
        if let Some((_, json)) = newest.patches.iter().find(|(b, _)| *b == old.rev) {
            return (rev, seq, json.clone());
        }
        let json: Arc<str> = json!({
            "rev": rev,
            "base": old.rev,
            "patch": patch::diff(&old.value, &newest.value),
        })
        .to_string()
        .into();
        newest.patches.push((old.rev, json.clone()));
        (rev, seq, json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(seq: u64, rows: &[&str]) -> Read {
        let rows: Vec<_> = rows
            .iter()
            .map(|id| json!({ "record": { "id": id } }))
            .collect();
        Read {
            rev: 0,
            seq,
            today: NaiveDate::from_ymd_opt(2026, 11, 30).expect("a date"),
            value: json!({ "seq": seq, "bookings": rows }),
            whole: None,
            patches: Vec::new(),
        }
    }

    fn parse(json: &str) -> serde_json::Value {
        serde_json::from_str(json).expect("JSON")
    }

    #[test]
    fn a_window_holding_a_kept_read_gets_a_patch_made_once() {
        let view = ViewRequest::Therapist;
        let mut state = State::default();
        state.keep(&view, read(3, &["a"]));
        state.keep(&view, read(4, &["a", "b"]));
        let (rev, seq, first) = state.reply(&view, Some(1));
        assert_eq!((rev, seq), (2, 4));
        let answer = parse(&first);
        assert_eq!(answer["base"], 1);
        assert_eq!(
            answer["patch"]["o"]["bookings"]["l"][0], 0,
            "the kept row by index"
        );
        let (_, _, again) = state.reply(&view, Some(1));
        assert!(Arc::ptr_eq(&first, &again), "made once for every window");
        assert_eq!(parse(&state.reply(&view, Some(2)).2)["patch"], json!(null));
    }

    #[test]
    fn a_window_holding_no_kept_read_gets_the_whole_view() {
        let view = ViewRequest::Driver;
        let mut state = State::default();
        for seq in 1..=READS_KEPT as u64 + 1 {
            state.keep(&view, read(seq, &["a"]));
        }
        assert!(state.current(&view, READS_KEPT as u64 + 1, read(0, &[]).today));
        for base in [None, Some(1)] {
            let answer = parse(&state.reply(&view, base).2);
            assert!(answer.get("data").is_some(), "{base:?}: {answer}");
        }
    }

    #[test]
    fn views_no_window_shows_are_dropped_beyond_the_limit() {
        let mut state = State::default();
        for week in 0..=VIEWS_KEPT as u64 {
            let day = NaiveDate::from_ymd_opt(2026, 1, 5).expect("a date")
                + chrono::Duration::weeks(week as i64);
            state.keep(
                &ViewRequest::Scheduling {
                    week: Some(day),
                    free: None,
                },
                read(1, &[]),
            );
        }
        assert!(state.reads.len() <= VIEWS_KEPT, "{}", state.reads.len());
    }
}
