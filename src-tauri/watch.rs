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
//! patch to the read it holds when the batch concerns its view.
//!
//! Each load brings a new channel and the previous one is dropped (which tells the page's
//! end of it to close): a Tauri channel numbers its messages from the first use of its Rust
//! side, and the page drops messages out of order, so one channel is never taken twice.
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
use crate::session::status_payload;
use crate::views;

/// How many different views are kept (a few per dashboard kind is plenty).
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
        let (rev, seq, json) = self.answer(&mut state, request, base).await?;
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

    /// Sends `batch` to every watching window, with what changed in its view if the batch
    /// concerns it. Windows that closed are forgotten. The batch's `at` and `views_ms` are
    /// filled in here: when it is sent, and how long reading the views took.
    pub async fn push(&self, app: &AppHandle, mut batch: ChangesPayload) {
        let started = std::time::Instant::now();
        let mut state = self.state.lock().await;
        state
            .watchers
            .retain(|label, _| app.get_webview_window(label).is_some());
        let labels: Vec<String> = state.watchers.keys().cloned().collect();
        let mut views = Vec::with_capacity(labels.len());
        for label in labels {
            let w = &state.watchers[&label];
            let concerned = !batch.reset
                && batch.to > w.seq
                && w.request.kinds().iter().any(|k| batch.kinds.contains(k));
            let view = if concerned {
                let (request, base) = (w.request.clone(), w.rev);
                match self.answer(&mut state, &request, Some(base)).await {
                    Ok((rev, seq, json)) => {
                        let w = state.watchers.get_mut(&label).expect("kept above");
                        (w.rev, w.seq) = (rev, seq);
                        Some(json)
                    }
                    Err(e) => {
                        // The window hears the batch and loads the view itself.
                        tracing::warn!("could not read the view of {label}: {e}");
                        None
                    }
                }
            } else {
                None
            };
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

    /// The answer to a window holding read `base` of `request`: `(rev, seq, json)` of the
    /// read it is now at.
    async fn answer(
        &self,
        state: &mut State,
        request: &ViewRequest,
        base: Option<u64>,
    ) -> Result<(u64, u64, Arc<str>), UiError> {
        let queries = self.engine.queries();
        let today = chrono::Local::now().date_naive();
        let seq = queries.seq().await?;
        let current = state
            .reads
            .get(request)
            .and_then(|r| r.back())
            .is_some_and(|r| r.seq == seq && r.today == today);
        if !current {
            let status = status_payload(&self.engine.status().borrow());
            let user = self.engine.user();
            let data = views::load(&queries, &user, request, today, status).await?;
            let value = serde_json::to_value(&data)
                .map_err(|e| UiError::internal("Could not send the view", e))?;
            if state.reads.len() >= VIEWS_KEPT && !state.reads.contains_key(request) {
                state.reads.clear();
            }
            state.next_rev += 1;
            let rev = state.next_rev;
            let kept = state.reads.entry(request.clone()).or_default();
            if kept.len() >= READS_KEPT {
                kept.pop_front();
            }
            kept.push_back(Read {
                rev,
                seq: data.seq,
                today,
                value,
                whole: None,
                patches: Vec::new(),
            });
        }
        let kept = state.reads.get_mut(request).expect("read above");
        let last = kept.len() - 1;
        let (older, newest) = kept.make_contiguous().split_at_mut(last);
        let newest = &mut newest[0];
        let (rev, seq) = (newest.rev, newest.seq);
        let old = match base {
            // Nothing changed since the window's read.
            Some(b) if b == rev => {
                let json = json!({ "rev": b, "base": b, "patch": null }).to_string();
                return Ok((rev, seq, json.into()));
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
            return Ok((rev, seq, json));
        };
        if let Some((_, json)) = newest.patches.iter().find(|(b, _)| *b == old.rev) {
            return Ok((rev, seq, json.clone()));
        }
        let json: Arc<str> = json!({
            "rev": rev,
            "base": old.rev,
            "patch": patch::diff(&old.value, &newest.value),
        })
        .to_string()
        .into();
        newest.patches.push((old.rev, json.clone()));
        Ok((rev, seq, json))
    }
}
