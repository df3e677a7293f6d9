//! Window kinds and labels, in one place.
//!
//! A window's label is `<kind>-<n>` (`operator-1`, `operator-2`, ...), or `login`. The kind
//! decides the page it shows and, through the capability files in `src-tauri/capabilities/`
//! (matched on the label's `<kind>-*` pattern), the commands it may call.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use clinic_protocol::{BookingAction, Role};
use tauri::{AppHandle, Manager, WebviewUrl, WebviewWindowBuilder};

use crate::ipc::WindowDto;

/// What a window shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowKind {
    Login,
    Operator,
    Therapist,
    Driver,
    Scheduling,
    Messages,
    /// Staff accounts (administrators only).
    Admin,
}

impl WindowKind {
    pub const DASHBOARDS: [WindowKind; 6] = [
        WindowKind::Operator,
        WindowKind::Therapist,
        WindowKind::Driver,
        WindowKind::Scheduling,
        WindowKind::Messages,
        WindowKind::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WindowKind::Login => "login",
            WindowKind::Operator => "operator",
            WindowKind::Therapist => "therapist",
            WindowKind::Driver => "driver",
            WindowKind::Scheduling => "scheduling",
            WindowKind::Messages => "messages",
            WindowKind::Admin => "admin",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            WindowKind::Login => "Clinic Desk: sign in",
            WindowKind::Operator => "Operator",
            WindowKind::Therapist => "My appointments",
            WindowKind::Driver => "My runs",
            WindowKind::Scheduling => "Scheduling",
            WindowKind::Messages => "Messages",
            WindowKind::Admin => "Staff",
        }
    }

    /// The page in ui/ that renders this kind.
    fn page(self) -> &'static str {
        match self {
            WindowKind::Login => "login.html",
            WindowKind::Operator => "operator.html",
            WindowKind::Therapist => "therapist.html",
            WindowKind::Driver => "driver.html",
            WindowKind::Scheduling => "scheduling.html",
            WindowKind::Messages => "messages.html",
            WindowKind::Admin => "admin.html",
        }
    }

    fn size(self) -> (f64, f64) {
        match self {
            WindowKind::Login => (420.0, 520.0),
            // The week grid, and the staff list beside the new-person form.
            WindowKind::Scheduling | WindowKind::Admin => (960.0, 640.0),
            _ => (720.0, 640.0),
        }
    }

    /// The keyboard shortcut that opens a new window of this kind (also in the Window menu).
    pub fn accelerator(self) -> Option<&'static str> {
        match self {
            WindowKind::Login => None,
            WindowKind::Operator => Some("CmdOrCtrl+1"),
            WindowKind::Therapist => Some("CmdOrCtrl+2"),
            WindowKind::Driver => Some("CmdOrCtrl+3"),
            WindowKind::Scheduling => Some("CmdOrCtrl+4"),
            WindowKind::Messages => Some("CmdOrCtrl+5"),
            WindowKind::Admin => Some("CmdOrCtrl+6"),
        }
    }

    /// The shortcut as menus and hints show it: "Ctrl+1".
    pub fn shortcut(self) -> Option<String> {
        self.accelerator().map(|a| a.replace("CmdOrCtrl", "Ctrl"))
    }

    /// Whether this dashboard offers a booking action (when the rules allow it): each
    /// dashboard offers the steps of its own job.
    pub fn offers(self, action: BookingAction) -> bool {
        use BookingAction as A;
        match self {
            WindowKind::Operator => matches!(
                action,
                A::StartSession | A::Complete | A::VerifyPayment | A::Cancel
            ),
            WindowKind::Therapist => {
                matches!(
                    action,
                    A::Accept | A::Decline | A::StartSession | A::Complete
                )
            }
            WindowKind::Driver => {
                matches!(action, A::ConfirmPickup | A::StartJourney | A::MarkArrived)
            }
            WindowKind::Login
            | WindowKind::Scheduling
            | WindowKind::Messages
            | WindowKind::Admin => false,
        }
    }

    /// Whether this dashboard offers rescheduling and reassigning bookings: the operator's
    /// and the scheduler's (whose whole job it is, with the week in view).
    pub fn offers_editing(self) -> bool {
        matches!(self, WindowKind::Operator | WindowKind::Scheduling)
    }

    /// How the UI names this kind; `label` is the window's own, when it is one.
    pub fn dto(self, label: Option<&str>) -> WindowDto {
        WindowDto {
            label: label.map(str::to_owned),
            kind: Some(self.as_str()),
            title: self.title(),
            shortcut: self.shortcut(),
        }
    }

    /// Whether a user holding `roles` may open this dashboard. An administrator may open
    /// every one; the Staff dashboard is theirs alone.
    pub fn allowed_for(self, roles: &[Role]) -> bool {
        let has = |r| roles.contains(&r) || roles.contains(&Role::Admin);
        match self {
            WindowKind::Login | WindowKind::Messages => true,
            WindowKind::Operator => has(Role::Operator),
            WindowKind::Therapist => has(Role::Therapist),
            WindowKind::Driver => has(Role::Driver),
            WindowKind::Scheduling => has(Role::Scheduler) || has(Role::Operator),
            WindowKind::Admin => roles.contains(&Role::Admin),
        }
    }
}

impl fmt::Display for WindowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WindowKind {
    type Err = UnknownWindowKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [WindowKind::Login]
            .into_iter()
            .chain(WindowKind::DASHBOARDS)
            .find(|k| k.as_str() == s)
            .ok_or(UnknownWindowKind)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown window kind")]
pub struct UnknownWindowKind;

/// The kind of a window, from its label.
pub fn kind_of(label: &str) -> Option<WindowKind> {
    let kind = label.split_once('-').map_or(label, |(k, _)| k);
    kind.parse().ok()
}

/// Numbers windows of one kind; labels are never reused within a run.
static NEXT_WINDOW: AtomicU32 = AtomicU32::new(1);

/// Where and how big a window was, to open it there again (logical pixels: the outer
/// position, the inner size), and whether it was maximized (then the place and size are
/// where it goes back to when unmaximized).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Placement {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    /// Layouts saved by older versions lack it.
    #[serde(default)]
    pub maximized: bool,
}

/// A rectangle in logical pixels: a monitor's work area (the part panels and docks leave).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

impl Rect {
    fn intersection(self, other: Rect) -> Option<Rect> {
        let (x, y) = (self.x.max(other.x), self.y.max(other.y));
        let right = (self.x + self.width).min(other.x + other.width);
        let bottom = (self.y + self.height).min(other.y + other.height);
        (right > x && bottom > y).then_some(Rect {
            x,
            y,
            width: right - x,
            height: bottom - y,
        })
    }

    /// A monitor's work area in logical pixels (Tauri gives it in physical ones).
    fn work_area(monitor: &tauri::Monitor) -> Rect {
        let scale = monitor.scale_factor();
        let area = monitor.work_area();
        let position = area.position.to_logical::<f64>(scale);
        let size = area.size.to_logical::<f64>(scale);
        Rect {
            x: position.x,
            y: position.y,
            width: size.width,
            height: size.height,
        }
    }
}

/// The strip at the top of a window taken for its title bar.
const TITLE_BAR: f64 = 32.0;
/// A window stays where it was if at least this much of its title bar (or all of it, for a
/// narrower window) lies on one monitor's work area: enough to grab it and drag it.
const GRAB: (f64, f64) = (100.0, 16.0);

impl Placement {
    /// This placement, kept where the user can reach it on the monitors there are now
    /// (`monitors`: their work areas; `primary`: the primary monitor's, if known):
    /// - a window whose title bar can be grabbed on some monitor stays where it is, even
    ///   partly off-screen;
    /// - one that cannot (its monitor is gone, or its title bar is under a panel or off the
    ///   edge) moves onto the primary monitor (or the first one), as near to where it was as
    ///   fits;
    /// - one bigger than its monitor shrinks to it and moves to fit in it;
    /// - with no monitor known, nothing changes.
    pub fn on_screen(self, monitors: &[Rect], primary: Option<Rect>) -> Placement {
        let Some(&first) = monitors.first() else {
            return self;
        };
        let title = Rect {
            x: self.x,
            y: self.y,
            width: self.width,
            height: TITLE_BAR.min(self.height),
        };
        let (grab_width, grab_height) = (GRAB.0.min(title.width), GRAB.1.min(title.height));
        let home = monitors
            .iter()
            .filter_map(|&m| Some((m, m.intersection(title)?)))
            .filter(|(_, seen)| seen.width >= grab_width && seen.height >= grab_height)
            .max_by(|(_, a), (_, b)| (a.width * a.height).total_cmp(&(b.width * b.height)))
            .map(|(m, _)| m);
        let area = match home {
            Some(area) if self.width <= area.width && self.height <= area.height => return self,
            Some(area) => area,
            None => primary.unwrap_or(first),
        };
        let width = self.width.min(area.width);
        let height = self.height.min(area.height);
        Placement {
            x: self.x.min(area.x + area.width - width).max(area.x),
            y: self.y.min(area.y + area.height - height).max(area.y),
            width,
            height,
            maximized: self.maximized,
        }
    }
}

/// The work areas of the monitors there are now, and the primary monitor's.
fn monitors(app: &AppHandle) -> (Vec<Rect>, Option<Rect>) {
    let all = app
        .available_monitors()
        .unwrap_or_default()
        .iter()
        .map(Rect::work_area)
        .collect();
    let primary = app.primary_monitor().ok().flatten();
    (all, primary.as_ref().map(Rect::work_area))
}

/// Opens a new window of `kind` (several of one kind are allowed).
pub fn open(app: &AppHandle, kind: WindowKind, at: Option<Placement>) -> tauri::Result<()> {
    let label = if kind == WindowKind::Login {
        kind.as_str().to_owned()
    } else {
        loop {
            let n = NEXT_WINDOW.fetch_add(1, Ordering::Relaxed);
            let label = format!("{kind}-{n}");
            if app.get_webview_window(&label).is_none() {
                break label;
            }
        }
    };
    open_labelled(app, &label, kind, at)
}

/// Opens a window under a label it had before (a restored layout), so that a change
/// queued from that window and refused after a restart is told in the same window.
pub fn reopen(app: &AppHandle, label: &str, kind: WindowKind, at: Placement) -> tauri::Result<()> {
    if kind_of(label) != Some(kind) || kind == WindowKind::Login {
        return open(app, kind, Some(at));
    }
    // New windows must not take this label later in the run.
    if let Some(n) = label
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse::<u32>().ok())
    {
        NEXT_WINDOW.fetch_max(n.saturating_add(1), Ordering::Relaxed);
    }
    open_labelled(app, label, kind, Some(at))
}

fn open_labelled(
    app: &AppHandle,
    label: &str,
    kind: WindowKind,
    at: Option<Placement>,
) -> tauri::Result<()> {
    if let Some(existing) = app.get_webview_window(label) {
        return existing.set_focus();
    }
    let label = label.to_owned();
    let build = move |app: &AppHandle, related: Option<WebView>| {
        // A place saved on a monitor that is gone is not restored off-screen.
        let at = at.map(|p| {
            let (all, primary) = monitors(app);
            p.on_screen(&all, primary)
        });
        let (width, height) = at.map_or(kind.size(), |p| (p.width, p.height));
        let mut builder =
            WebviewWindowBuilder::new(app, &label, WebviewUrl::App(kind.page().into()))
                .title(kind.title())
                .inner_size(width, height)
                .min_inner_size(380.0, 420.0);
        if let Some(p) = at {
            builder = builder.position(p.x, p.y);
        }
        #[cfg(target_os = "linux")]
        if let Some(view) = related {
            builder = builder.with_related_view(view);
        }
        let window = builder.build()?;
        if at.is_some_and(|p| p.maximized) {
            if let Err(e) = window.maximize() {
                tracing::warn!("could not maximize {label}: {e}");
            }
        }
        Ok(())
    };
    share_web_process(app, build)
}

/// The view a new window may share its web process with.
#[cfg(target_os = "linux")]
type WebView = webkit2gtk::WebView;
#[cfg(not(target_os = "linux"))]
type WebView = ();

/// Builds a window in the web process of the windows already open. WebKit gives each view
/// its own web process (about 100 MiB each) unless it is related to another view; our
/// pages come from the app itself and trust each other, so they share one. A related view
/// keeps the process alive when the view it was related to closes, and a window opened
/// when none is left starts a new process.
///
/// The other window's view lives on the main thread, so the window is built there, later:
/// whoever asked gets no handle back.
#[cfg(target_os = "linux")]
fn share_web_process(
    app: &AppHandle,
    build: impl Fn(&AppHandle, Option<WebView>) -> tauri::Result<()> + Send + 'static,
) -> tauri::Result<()> {
    let Some(other) = app.webview_windows().into_values().next() else {
        return build(app, None);
    };
    let app = app.clone();
    other.with_webview(move |view| {
        if let Err(e) = build(&app, Some(view.inner())) {
            // A window of its own process is better than none (with none left, the app
            // would quit).
            tracing::warn!("could not open a window in the shared web process: {e}");
            if let Err(e) = build(&app, None) {
                tracing::error!("could not open a window: {e}");
            }
        }
    })
}

#[cfg(not(target_os = "linux"))]
fn share_web_process(
    app: &AppHandle,
    build: impl FnOnce(&AppHandle, Option<WebView>) -> tauri::Result<()>,
) -> tauri::Result<()> {
    build(app, None)
}

/// The window that should tell the user about a change made in window `label`: that one
/// if it is still open, otherwise another window of the same kind, otherwise the first
/// dashboard (which offers to open a window of the right kind when the change has a form:
/// see [`crate::ipc::RejectionPayload::open`]). A change with no window named (`None`,
/// queued by an older app) is told in the first dashboard.
pub fn teller(app: &AppHandle, label: Option<&str>) -> Option<String> {
    let open = app.webview_windows();
    if let Some(label) = label.filter(|l| open.contains_key(*l)) {
        return Some(label.to_owned());
    }
    let kind = label.and_then(kind_of);
    let mut dashboards: Vec<&String> = open
        .keys()
        .filter(|l| kind_of(l).is_some_and(|k| k != WindowKind::Login))
        .collect();
    dashboards.sort();
    dashboards
        .iter()
        .find(|l| kind.is_some() && kind_of(l) == kind)
        .or_else(|| dashboards.first())
        .map(|l| (*l).clone())
}

/// Focuses a window of `kind` if one is open, otherwise opens one.
pub fn focus_or_open(app: &AppHandle, kind: WindowKind) -> tauri::Result<()> {
    let existing = app
        .webview_windows()
        .into_iter()
        .find(|(label, _)| kind_of(label) == Some(kind))
        .map(|(_, w)| w);
    match existing {
        Some(window) => {
            window.unminimize()?;
            window.show()?;
            window.set_focus()
        }
        // A new window comes up focused.
        None => open(app, kind, None),
    }
}

/// Opens the first dashboards of a user, tiled side by side on a 2x2 grid of the primary
/// monitor: see [`default_set`].
pub fn open_default_set(app: &AppHandle, roles: &[Role]) -> tauri::Result<()> {
    let kinds = default_set(roles);
    let (screen_w, screen_h) = app
        .primary_monitor()
        .ok()
        .flatten()
        .map(|m| {
            let size = m.size().to_logical::<f64>(m.scale_factor());
            (size.width, size.height)
        })
        .unwrap_or((1440.0, 900.0));
    let (w, h) = ((screen_w / 2.0).floor(), (screen_h / 2.0).floor());
    for (i, kind) in kinds.into_iter().enumerate() {
        let placement = Placement {
            x: (i % 2) as f64 * w,
            y: (i / 2) as f64 * h,
            width: w.max(380.0),
            height: h.max(420.0),
            maximized: false,
        };
        open(app, kind, Some(placement))?;
    }
    Ok(())
}

/// The first dashboards of a user: those of their own jobs (an administrator may open
/// every dashboard, but does not get every one at first), the Staff dashboard first for an
/// administrator, four at most.
pub fn default_set(roles: &[Role]) -> Vec<WindowKind> {
    let jobs: Vec<Role> = roles
        .iter()
        .copied()
        .filter(|r| *r != Role::Admin)
        .collect();
    let mut kinds: Vec<WindowKind> = WindowKind::DASHBOARDS
        .into_iter()
        .filter(|k| *k != WindowKind::Admin && k.allowed_for(&jobs))
        .collect();
    if WindowKind::Admin.allowed_for(roles) {
        kinds.insert(0, WindowKind::Admin);
    }
    kinds.truncate(4);
    kinds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_staff_dashboard_is_for_administrators_and_opens_first_for_them() {
        assert!(WindowKind::Admin.allowed_for(&[Role::Admin]));
        assert!(!WindowKind::Admin.allowed_for(&[Role::Operator, Role::Scheduler]));
        // An administrator may still open every dashboard.
        assert!(WindowKind::DASHBOARDS
            .iter()
            .all(|k| k.allowed_for(&[Role::Admin])));
        assert_eq!(
            default_set(&[Role::Admin]),
            [WindowKind::Admin, WindowKind::Messages]
        );
        assert_eq!(
            default_set(&[Role::Operator, Role::Therapist]),
            [
                WindowKind::Operator,
                WindowKind::Therapist,
                WindowKind::Scheduling,
                WindowKind::Messages
            ]
        );
        assert_eq!(
            default_set(&[Role::Driver, Role::Admin])[0],
            WindowKind::Admin
        );
        assert_eq!("admin".parse::<WindowKind>().ok(), Some(WindowKind::Admin));
    }

    /// A 1440x900 primary monitor, and a 1920x1080 one on its right.
    const PRIMARY: Rect = Rect {
        x: 0.0,
        y: 0.0,
        width: 1440.0,
        height: 900.0,
    };
    const RIGHT: Rect = Rect {
        x: 1440.0,
        y: 0.0,
        width: 1920.0,
        height: 1080.0,
    };

    fn at(x: f64, y: f64, width: f64, height: f64) -> Placement {
        Placement {
            x,
            y,
            width,
            height,
            maximized: false,
        }
    }

    #[test]
    fn a_window_on_a_monitor_stays_where_it_was() {
        for p in [
            at(100.0, 100.0, 720.0, 640.0),
            at(0.0, 0.0, 1440.0, 900.0),
            at(2000.0, 300.0, 960.0, 640.0),
        ] {
            assert_eq!(p.on_screen(&[PRIMARY, RIGHT], Some(PRIMARY)), p);
        }
    }

    #[test]
    fn a_window_on_a_monitor_that_is_gone_moves_onto_the_primary() {
        // It was on the right-hand monitor: it goes to the right edge of the primary.
        let p = at(2000.0, 100.0, 720.0, 640.0);
        assert_eq!(
            p.on_screen(&[PRIMARY], Some(PRIMARY)),
            at(720.0, 100.0, 720.0, 640.0)
        );
        // Far above and to the left: the top left corner.
        let p = at(-3000.0, -2000.0, 720.0, 640.0);
        assert_eq!(
            p.on_screen(&[PRIMARY], Some(PRIMARY)),
            at(0.0, 0.0, 720.0, 640.0)
        );
        // Onto the primary, even when another monitor is listed first.
        let p = at(-3000.0, 100.0, 720.0, 640.0);
        assert_eq!(
            p.on_screen(&[RIGHT, PRIMARY], Some(PRIMARY)),
            at(0.0, 100.0, 720.0, 640.0)
        );
        // No primary known: the first monitor.
        assert_eq!(p.on_screen(&[RIGHT], None), at(1440.0, 100.0, 720.0, 640.0));
        // Maximized stays maximized.
        let p = Placement {
            maximized: true,
            ..at(5000.0, 100.0, 720.0, 640.0)
        };
        assert!(p.on_screen(&[PRIMARY], Some(PRIMARY)).maximized);
    }

    #[test]
    fn a_partly_visible_window_stays_if_its_title_bar_can_be_grabbed() {
        for p in [
            // 140 px of its title bar on the right edge, 120 px on the left edge.
            at(1300.0, 100.0, 720.0, 640.0),
            at(-600.0, 200.0, 720.0, 640.0),
            // Hanging below the bottom edge.
            at(200.0, 800.0, 720.0, 640.0),
            // Half of a title bar above the top edge is still enough.
            at(200.0, -10.0, 720.0, 640.0),
        ] {
            assert_eq!(p.on_screen(&[PRIMARY], Some(PRIMARY)), p);
        }
        // Only 50 px of it on the screen: moved in.
        let p = at(1390.0, 100.0, 720.0, 640.0);
        assert_eq!(
            p.on_screen(&[PRIMARY], Some(PRIMARY)),
            at(720.0, 100.0, 720.0, 640.0)
        );
        // Its title bar under a top panel (the work area starts at 27): moved below it.
        let under_panel = Rect {
            y: 27.0,
            height: 873.0,
            ..PRIMARY
        };
        let p = at(200.0, 0.0, 720.0, 640.0);
        assert_eq!(
            p.on_screen(&[under_panel], Some(under_panel)),
            at(200.0, 27.0, 720.0, 640.0)
        );
        // Its title bar above the screen, the rest of it on it: moved down.
        let p = at(200.0, -100.0, 720.0, 640.0);
        assert_eq!(
            p.on_screen(&[PRIMARY], Some(PRIMARY)),
            at(200.0, 0.0, 720.0, 640.0)
        );
    }

    #[test]
    fn a_window_bigger_than_its_monitor_is_clamped_to_it() {
        let p = at(0.0, 0.0, 3000.0, 2000.0);
        assert_eq!(p.on_screen(&[PRIMARY], Some(PRIMARY)), PRIMARY_PLACEMENT);
        let p = at(200.0, 100.0, 1600.0, 1000.0);
        assert_eq!(p.on_screen(&[PRIMARY], Some(PRIMARY)), PRIMARY_PLACEMENT);
        // On the right-hand monitor, it fits that one.
        let p = at(1500.0, 50.0, 2500.0, 640.0);
        assert_eq!(
            p.on_screen(&[PRIMARY, RIGHT], Some(PRIMARY)),
            at(1440.0, 50.0, 1920.0, 640.0)
        );
    }

    const PRIMARY_PLACEMENT: Placement = Placement {
        x: 0.0,
        y: 0.0,
        width: 1440.0,
        height: 900.0,
        maximized: false,
    };

    #[test]
    fn with_no_monitor_known_nothing_moves() {
        let p = at(5000.0, -3000.0, 4000.0, 3000.0);
        assert_eq!(p.on_screen(&[], None), p);
        assert_eq!(p.on_screen(&[], Some(PRIMARY)), p);
    }
}
