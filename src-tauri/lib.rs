//! Clinic Desk, the desktop app: one backend process, one sync engine, any number of
//! dashboard windows that render what the backend broadcasts.
//!
//! - [`ipc`]: the boundary: every command's arguments and answers, every event name and
//!   payload (mirrored by `ui/js/ipc.js`).
//! - [`commands`]: the Tauri commands windows call; [`admin`]: those of accounts (the Staff
//!   dashboard's, and changing one's own password); [`error`]: the error they return.
//! - [`backend`]: the app's state (settings, session, layout, demo server) and start-up.
//! - [`session`]: the signed-in session around the ONE sync engine, and the tasks that
//!   forward its changes, status and rejections to every window; [`status`]: the sync
//!   status every window shows (the dot and the sync panel), in one payload.
//! - [`views`]: what each dashboard shows, read from the cache in SQL, each booking with
//!   the actions the shared rules allow; [`watch`]: each window's view read once for all
//!   who show it and kept current by pushing what changed ([`patch`]) with each batch.
//! - [`windows`]: window kinds, labels and what each dashboard offers; [`menu`]: the Window
//!   menu; [`layout`]: which dashboards were open where, restored at the next start.
//! - [`news`]: what deserves a notification (pure); [`notify`]: showing it.
//! - [`config`]: command line, environment and config file; [`demo`]: the embedded demo server.
//! - [`logs`]: the log, on stderr and in a rotated file in the platform's log folder.

pub mod admin;
pub mod backend;
pub mod commands;
pub mod config;
pub mod demo;
pub mod error;
pub mod ipc;
pub mod layout;
pub mod logs;
pub mod menu;
pub mod news;
pub mod notify;
pub mod patch;
pub mod session;
pub mod status;
pub mod views;
pub mod watch;
pub mod windows;

use clap::Parser;
use tauri::{Manager, RunEvent, WindowEvent};

use backend::Backend;
use windows::{Placement, WindowKind};

/// Starts the app and blocks until it quits.
/// WebKitGTK composites pages with OpenGL. Without a GPU driver (a virtual display, a
/// remote desktop, many clinic PCs' basic graphics) that OpenGL is Mesa's software
/// rasteriser: in the window benchmark its threads took nearly half of all CPU samples of
/// a 2-core machine while dashboards re-rendered, and four windows held twice the memory
/// of one. Dashboards are plain documents that gain nothing from compositing on a GPU, so
/// it is off unless the user sets WebKit's own variable or asks for it with
/// `CLINIC_DESK_GPU=1`.
fn software_compositing_off() {
    const WEBKIT: &str = "WEBKIT_DISABLE_COMPOSITING_MODE";
    if std::env::var_os(WEBKIT).is_none() && std::env::var("CLINIC_DESK_GPU").as_deref() != Ok("1")
    {
        std::env::set_var(WEBKIT, "1");
    }
}

pub fn run() {
    // First, while the process has one thread: WebKit reads it when it starts.
    software_compositing_off();
    let args = config::Args::parse();
    let context = tauri::generate_context!();
    // On stderr and in a rotated file, without secrets (the feed's hello carries the
    // session token, and a trace log would show it).
    logs::init(logs::default_dir(
        &context.config().identifier,
        args.data_dir.as_deref(),
    ));
    if let Some(dir) = logs::dir() {
        tracing::info!("logs in {}", dir.display());
    }
    let instance_id = config::instance_id(&context.config().identifier, args.data_dir.as_deref());

    let app = tauri::Builder::default()
        // Starting the app again focuses the running one instead of opening a second
        // engine on the same cache. One instance per data directory: a second profile
        // (`--data-dir`) is a separate app.
        .plugin(
            tauri_plugin_single_instance::Builder::new()
                .dbus_id(instance_id)
                .callback(|app, _argv, _cwd| {
                    if let Some((_, window)) = app.webview_windows().into_iter().next() {
                        let _ = window.unminimize();
                        let _ = window.set_focus();
                    }
                })
                .build(),
        )
        .menu(menu::build)
        .on_menu_event(|app, event| menu::handle(app, &event))
        .invoke_handler(tauri::generate_handler![
            commands::session,
            commands::login,
            commands::logout,
            commands::load,
            commands::submit,
            commands::rejections,
            commands::seen_rejection,
            commands::open_window,
            commands::sign_in_again,
            admin::change_password,
            admin::create_staff,
            admin::change_staff,
            admin::reset_password,
        ])
        .setup(move |app| {
            let settings = config::Settings::new(
                args,
                app.path().app_data_dir()?,
                app.path().app_config_dir()?,
            );
            tracing::info!("data in {}", settings.data_dir.display());
            app.manage(Backend::new(settings));
            // A click on a notification opens its dashboard only as the menu would: signed in
            // and allowed by the roles the user has then.
            notify::on_click(|app, kind| {
                let app = app.clone();
                tauri::async_runtime::spawn(async move {
                    let backend = app.state::<Backend>();
                    if let Err(e) = backend.focus_dashboard(&app, kind).await {
                        tracing::warn!("not opening the {kind} dashboard: {}", e.message);
                    }
                });
            });
            // The menu follows the user's roles when an administrator changes them.
            session::menu_follows_roles(menu::enable_for);
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                let backend = handle.state::<Backend>();
                match backend.start(&handle).await {
                    Ok(roles) => menu::enable_for(&handle, &roles),
                    Err(e) => {
                        tracing::error!("start-up failed: {e:#}");
                        if handle.webview_windows().is_empty() {
                            let _ = windows::open(&handle, WindowKind::Login, None);
                        }
                    }
                }
            });
            Ok(())
        })
        .on_window_event(track_layout)
        .on_page_load(|webview, payload| {
            if payload.event() == tauri::webview::PageLoadEvent::Finished {
                record_placement(&webview.window());
            }
        })
        .build(context)
        .expect("error while building Clinic Desk");

    app.run(|app, event| {
        if let RunEvent::ExitRequested { .. } = event {
            app.state::<Backend>().layout.exiting();
        }
    });
}

/// Keeps the layout current as windows move, resize and close.
fn track_layout(window: &tauri::Window, event: &WindowEvent) {
    if windows::kind_of(window.label()).is_none() {
        return;
    }
    let layout = &window.state::<Backend>().layout;
    match event {
        WindowEvent::Moved(_) | WindowEvent::Resized(_) => record_placement(window),
        WindowEvent::CloseRequested { .. } => {
            layout.closing(window.label());
            // If the app is still running after the grace period, the user closed this
            // window for good (see `Layout::closing`).
            let app = window.app_handle().clone();
            tauri::async_runtime::spawn(async move {
                tokio::time::sleep(layout::QUIT_GRACE).await;
                app.state::<Backend>().layout.settle();
            });
        }
        // Its channel and the reads kept for it go now, not at the next change.
        WindowEvent::Destroyed => {
            let app = window.app_handle().clone();
            let label = window.label().to_owned();
            tauri::async_runtime::spawn(async move {
                if let Some(session) = app.state::<Backend>().session.read().await.as_ref() {
                    session.forget(&label).await;
                }
            });
        }
        _ => {}
    }
}

/// Records where a dashboard window is, in the layout. Called when its page has loaded
/// (a window that is never moved or resized, which is common under some window managers,
/// still gets recorded) and whenever it moves or is resized.
fn record_placement(window: &tauri::Window) {
    let Some(kind) = windows::kind_of(window.label()) else {
        return;
    };
    let scale = window.scale_factor().unwrap_or(1.0);
    if let (Ok(pos), Ok(size)) = (window.outer_position(), window.inner_size()) {
        let pos = pos.to_logical::<f64>(scale);
        let size = size.to_logical::<f64>(scale);
        window.state::<Backend>().layout.update(
            window.label(),
            kind,
            Placement {
                x: pos.x,
                y: pos.y,
                width: size.width,
                height: size.height,
                maximized: window.is_maximized().unwrap_or(false),
            },
        );
    }
}
