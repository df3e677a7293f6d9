//! The "Window" menu: a new window of any dashboard the user may open (with a keyboard
//! shortcut each), changing one's password, and signing out. The items follow the user's
//! roles, also when an administrator changes them while signed in.

use clinic_protocol::Role;
use tauri::menu::{Menu, MenuEvent, MenuItem, PredefinedMenuItem, Submenu};
use tauri::{AppHandle, Emitter, Manager, Runtime};

use crate::backend::Backend;
use crate::ipc;
use crate::windows::{self, WindowKind};

const OPEN_PREFIX: &str = "open:";
const CHANGE_PASSWORD: &str = "change-password";
const SIGN_OUT: &str = "sign-out";
const WINDOW_MENU: &str = "window";

pub fn build<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<Menu<R>> {
    let window = Submenu::with_id(app, WINDOW_MENU, "Window", true)?;
    for kind in WindowKind::DASHBOARDS {
        let item = MenuItem::with_id(
            app,
            format!("{OPEN_PREFIX}{kind}"),
            format!("New {} Window", kind.title()),
            false,
            kind.accelerator(),
        )?;
        window.append(&item)?;
    }
    window.append(&PredefinedMenuItem::separator(app)?)?;
    window.append(&MenuItem::with_id(
        app,
        CHANGE_PASSWORD,
        // The same words as the page's own Window menu (ui/js/shell.js, ui/js/menu.js).
        "Change password…",
        false,
        None::<&str>,
    )?)?;
    window.append(&MenuItem::with_id(
        app,
        SIGN_OUT,
        "Sign out",
        false,
        None::<&str>,
    )?)?;
    Menu::with_items(app, &[&window])
}

/// Enables the items the user's roles allow (none before signing in).
pub fn enable_for<R: Runtime>(app: &AppHandle<R>, roles: &[Role]) {
    // Items live in the Window submenu; `Menu::get` only looks at the top level.
    let Some(menu) = app
        .menu()
        .and_then(|m| m.get(WINDOW_MENU))
        .and_then(|i| i.as_submenu().cloned())
    else {
        return;
    };
    let signed_in = !roles.is_empty();
    for kind in WindowKind::DASHBOARDS {
        if let Some(item) = menu
            .get(&format!("{OPEN_PREFIX}{kind}"))
            .and_then(|i| i.as_menuitem().cloned())
        {
            let _ = item.set_enabled(signed_in && kind.allowed_for(roles));
        }
    }
    for id in [CHANGE_PASSWORD, SIGN_OUT] {
        if let Some(item) = menu.get(id).and_then(|i| i.as_menuitem().cloned()) {
            let _ = item.set_enabled(signed_in);
        }
    }
}

pub fn handle(app: &AppHandle, event: &MenuEvent) {
    let id = event.id().as_ref();
    let app = app.clone();
    if id == CHANGE_PASSWORD {
        ask_for_password(&app);
    } else if id == SIGN_OUT {
        enable_for(&app, &[]);
        tauri::async_runtime::spawn(async move {
            if let Err(e) = app.state::<Backend>().logout(&app).await {
                tracing::warn!("sign out: {e}");
            }
        });
    } else if let Some(kind) = id
        .strip_prefix(OPEN_PREFIX)
        .and_then(|k| k.parse::<WindowKind>().ok())
    {
        tauri::async_runtime::spawn(async move {
            if let Err(e) = app.state::<Backend>().open_dashboard(&app, kind).await {
                tracing::warn!("open {kind}: {e}");
            }
        });
    }
}

/// Asks a dashboard to show the change-password dialog: the focused one, or else the first
/// open. (The dialog lives in the page, next to what the user is doing.)
fn ask_for_password(app: &AppHandle) {
    let mut dashboards: Vec<(String, bool)> = app
        .webview_windows()
        .into_iter()
        .filter(|(label, _)| windows::kind_of(label).is_some_and(|k| k != WindowKind::Login))
        .map(|(label, w)| (label, w.is_focused().unwrap_or(false)))
        .collect();
    dashboards.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let Some((label, _)) = dashboards.into_iter().next() else {
        return;
    };
    if let Some(window) = app.get_webview_window(&label) {
        let _ = window.set_focus();
    }
    if let Err(e) = app.emit(ipc::CHANGE_PASSWORD, label) {
        tracing::warn!("could not ask for the change-password dialog: {e}");
    }
}
