//! The set of open dashboards and where they were, restored at the next start.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::write_atomically;
use crate::windows::{Placement, WindowKind};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved {
    /// The window's label, reused at the next start (files of older versions lack it).
    #[serde(default)]
    label: Option<String>,
    kind: String,
    #[serde(flatten)]
    placement: Placement,
}

/// Tracks open dashboards (by label) and their placement; saved as JSON.
#[derive(Debug)]
pub struct Layout {
    file: PathBuf,
    open: Mutex<BTreeMap<String, (WindowKind, Placement)>>,
    /// Windows closed lately, with when: see [`Layout::closing`].
    closed: Mutex<Vec<Closed>>,
    /// Where the restored windows were, by label: a window that opens maximized is
    /// recorded with this place, to go back to when it is unmaximized.
    restored: Mutex<BTreeMap<String, Placement>>,
    grace: Duration,
}

/// A window closed lately: its label, kind and placement, and when it closed.
type Closed = (String, (WindowKind, Placement), Instant);

/// Windows that close this shortly before the app quits were closed by quitting.
pub const QUIT_GRACE: Duration = Duration::from_secs(2);

impl Layout {
    pub fn new(file: PathBuf) -> Layout {
        Layout::with_grace(file, QUIT_GRACE)
    }

    fn with_grace(file: PathBuf, grace: Duration) -> Layout {
        Layout {
            file,
            open: Mutex::new(BTreeMap::new()),
            closed: Mutex::new(Vec::new()),
            restored: Mutex::new(BTreeMap::new()),
            grace,
        }
    }

    /// The dashboards of the last run, with their labels and placements.
    pub fn restore(&self) -> Vec<(Option<String>, WindowKind, Placement)> {
        let saved: Vec<Saved> = std::fs::read(&self.file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut restored = self.restored.lock().unwrap_or_else(PoisonError::into_inner);
        restored.extend(
            saved
                .iter()
                .filter_map(|s| Some((s.label.clone()?, s.placement))),
        );
        saved
            .into_iter()
            .filter_map(|s| Some((s.label, s.kind.parse().ok()?, s.placement)))
            .filter(|(_, k, _)| *k != WindowKind::Login)
            .collect()
    }

    /// Records where window `label` is. A maximized window keeps the place it had before
    /// (or was restored to), where it goes back to when unmaximized.
    pub fn update(&self, label: &str, kind: WindowKind, placement: Placement) {
        if kind == WindowKind::Login {
            return;
        }
        let mut open = self.lock();
        let before = || {
            open.get(label).map(|(_, before)| *before).or_else(|| {
                let restored = self.restored.lock();
                let restored = restored.unwrap_or_else(PoisonError::into_inner);
                restored.get(label).copied()
            })
        };
        let placement = if placement.maximized {
            before().map_or(placement, |before| Placement {
                maximized: true,
                ..before
            })
        } else {
            placement
        };
        let new = open.insert(label.to_owned(), (kind, placement)).is_none();
        drop(open);
        // A window is saved as soon as it opens, not only at a clean exit: after a crash the
        // same windows come back under the same labels, and a change queued in one of them
        // and refused later is still told there. Moves are saved at exit.
        if new {
            self.save();
        }
    }

    /// A window is closing. The last dashboard to close stays in the layout: closing the
    /// last window quits the app, and the user expects to find it again next time.
    ///
    /// Quitting (or being stopped) also closes every window in turn, and those windows must
    /// come back at the next start. So a closed window stays in the saved layout for a
    /// grace period, and is forgotten by [`Layout::settle`] only if the app is still
    /// running when the grace period is over.
    pub fn closing(&self, label: &str) {
        let mut open = self.lock();
        if open.len() > 1 {
            if let Some(entry) = open.remove(label) {
                self.recently_closed()
                    .push((label.to_owned(), entry, Instant::now()));
            }
        }
        drop(open);
        self.save();
    }

    /// Forgets the windows closed longer ago than the grace period (call it that long
    /// after a window closed).
    pub fn settle(&self) {
        self.recently_closed()
            .retain(|(_, _, at)| at.elapsed() < self.grace);
        self.save();
    }

    /// The app is quitting: what was open, or closed within the grace period, is kept.
    pub fn exiting(&self) {
        self.save();
    }

    /// Forgets everything (logout: the next user has other dashboards).
    pub fn clear(&self) {
        self.lock().clear();
        self.recently_closed().clear();
        self.save();
    }

    pub fn save(&self) {
        let mut all = self.lock().clone();
        for (label, entry, at) in self.recently_closed().iter() {
            if at.elapsed() < self.grace {
                all.entry(label.clone()).or_insert(*entry);
            }
        }
        let saved: Vec<Saved> = all
            .into_iter()
            .map(|(label, (kind, placement))| Saved {
                label: Some(label),
                kind: kind.as_str().to_owned(),
                placement,
            })
            .collect();
        let result = serde_json::to_vec_pretty(&saved)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| write_atomically(&self.file, &bytes));
        if let Err(e) = result {
            tracing::warn!("could not save the window layout: {e:#}");
        }
    }

    fn recently_closed(&self) -> std::sync::MutexGuard<'_, Vec<Closed>> {
        self.closed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (WindowKind, Placement)>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Placement = Placement {
        x: 0.0,
        y: 0.0,
        width: 600.0,
        height: 400.0,
        maximized: false,
    };

    fn labels(layout: &Layout) -> Vec<String> {
        let mut labels: Vec<String> = layout
            .restore()
            .into_iter()
            .filter_map(|(label, _, _)| label)
            .collect();
        labels.sort();
        labels
    }

    #[test]
    fn quitting_keeps_every_window_under_its_label() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("layout.json"));
        layout.update("operator-1", WindowKind::Operator, AT);
        layout.update("therapist-2", WindowKind::Therapist, AT);
        layout.update("messages-3", WindowKind::Messages, AT);
        // Saved as soon as they open, in case the app never exits cleanly.
        let all = ["messages-3", "operator-1", "therapist-2"];
        assert_eq!(labels(&layout), all);

        // Quitting closes the windows one by one; the app may be gone before it exits
        // cleanly, so the file must be right at every step.
        layout.closing("operator-1");
        layout.closing("therapist-2");
        assert_eq!(labels(&layout), all);
        layout.closing("messages-3");
        layout.exiting();
        assert_eq!(labels(&layout), all);
    }

    #[test]
    fn a_window_closed_while_the_app_runs_on_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::with_grace(dir.path().join("layout.json"), Duration::ZERO);
        layout.update("operator-1", WindowKind::Operator, AT);
        layout.update("therapist-2", WindowKind::Therapist, AT);
        layout.closing("operator-1");
        layout.settle();
        assert_eq!(labels(&layout), ["therapist-2"]);
        layout.closing("therapist-2");
        assert_eq!(labels(&layout), ["therapist-2"], "the last one stays");
    }

    #[test]
    fn signing_out_forgets_the_windows() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("layout.json"));
        layout.update("operator-1", WindowKind::Operator, AT);
        layout.update("therapist-2", WindowKind::Therapist, AT);
        layout.closing("operator-1");
        layout.clear();
        layout.exiting();
        assert!(labels(&layout).is_empty());
    }

    #[test]
    fn a_maximized_window_is_restored_maximized_over_its_earlier_place() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("layout.json");
        let layout = Layout::new(file.clone());
        let full = Placement {
            x: 0.0,
            y: 0.0,
            width: 1440.0,
            height: 900.0,
            maximized: true,
        };
        let moved = Placement { x: 40.0, ..AT };
        layout.update("operator-1", WindowKind::Operator, moved);
        layout.update("operator-1", WindowKind::Operator, full);
        layout.exiting();
        let expected = Placement {
            maximized: true,
            ..moved
        };
        let restored = Layout::new(file.clone()).restore();
        assert_eq!(restored[0].2, expected);

        // At the next start it opens already maximized: it is recorded where it was.
        let next = Layout::new(file.clone());
        assert_eq!(next.restore()[0].2, expected);
        next.update("operator-1", WindowKind::Operator, full);
        next.exiting();
        assert_eq!(Layout::new(file.clone()).restore()[0].2, expected);

        // Unmaximized, it is where it went back to.
        next.update("operator-1", WindowKind::Operator, AT);
        next.exiting();
        assert_eq!(Layout::new(file).restore()[0].2, AT);
    }

    #[test]
    fn a_layout_saved_before_maximized_existed_still_restores() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("layout.json");
        std::fs::write(
            &file,
            r#"[{"label":"operator-1","kind":"operator","x":10.0,"y":20.0,"width":600.0,"height":400.0}]"#,
        )
        .unwrap();
        let restored = Layout::new(file).restore();
        assert_eq!(
            restored,
            [(
                Some("operator-1".to_owned()),
                WindowKind::Operator,
                Placement {
                    x: 10.0,
                    y: 20.0,
                    ..AT
                }
            )]
        );
    }
}
