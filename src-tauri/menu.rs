//! The "Window" menu: a new window of any dashboard the user may open (with a keyboard
//! shortcut each), and signing out.

use clinic_protocol::Role;
use tauri::menu::{Menu, MenuEvent, MenuItem, PredefinedMenuItem, Submenu};
use tauri::{AppHandle, Manager, Runtime};

use crate::backend::Backend;
use crate::windows::WindowKind;

const OPEN_PREFIX: &str = "open:";
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
        SIGN_OUT,
        "Sign Out",
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
    if let Some(item) = menu.get(SIGN_OUT).and_then(|i| i.as_menuitem().cloned()) {
        let _ = item.set_enabled(signed_in);
    }
}

pub fn handle(app: &AppHandle, event: &MenuEvent) {
    let id = event.id().as_ref();
    let app = app.clone();
    if id == SIGN_OUT {
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
