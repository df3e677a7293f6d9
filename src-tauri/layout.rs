//! The set of open dashboards and where they were, restored at the next start.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::config::write_atomically;
use crate::windows::{Placement, WindowKind};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved {
    kind: String,
    #[serde(flatten)]
    placement: Placement,
}

/// Tracks open dashboards (by label) and their placement; saved as JSON.
#[derive(Debug)]
pub struct Layout {
    file: PathBuf,
    open: Mutex<BTreeMap<String, (WindowKind, Placement)>>,
}

impl Layout {
    pub fn new(file: PathBuf) -> Layout {
        Layout {
            file,
            open: Mutex::new(BTreeMap::new()),
        }
    }

    /// The dashboards of the last run, in the order they were opened.
    pub fn restore(&self) -> Vec<(WindowKind, Placement)> {
        let saved: Vec<Saved> = std::fs::read(&self.file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        saved
            .into_iter()
            .filter_map(|s| Some((s.kind.parse().ok()?, s.placement)))
            .filter(|(k, _)| *k != WindowKind::Login)
            .collect()
    }

    pub fn update(&self, label: &str, kind: WindowKind, placement: Placement) {
        if kind == WindowKind::Login {
            return;
        }
        self.lock().insert(label.to_owned(), (kind, placement));
    }

    /// A window is closing. The last dashboard to close stays in the layout: closing the
    /// last window quits the app, and the user expects to find it again next time.
    pub fn closing(&self, label: &str) {
        let mut open = self.lock();
        if open.len() > 1 {
            open.remove(label);
        }
        drop(open);
        self.save();
    }

    /// Forgets everything (logout: the next user has other dashboards).
    pub fn clear(&self) {
        self.lock().clear();
        self.save();
    }

    pub fn save(&self) {
        let saved: Vec<Saved> = self
            .lock()
            .values()
            .map(|(kind, placement)| Saved {
                kind: kind.as_str().to_owned(),
                placement: *placement,
            })
            .collect();
        let result = serde_json::to_vec_pretty(&saved)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| write_atomically(&self.file, &bytes));
        if let Err(e) = result {
            tracing::warn!("could not save the window layout: {e:#}");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (WindowKind, Placement)>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
