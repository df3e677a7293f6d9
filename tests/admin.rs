//! The Staff dashboard in the real app, with a second app beside it (two desks of one
//! clinic, each its own process, data directory and WebDriver session): an administrator
//! makes an account in the Staff window and is shown its one-time password once; the new
//! person signs in with it on the other desk and must choose a password of their own; the
//! administrator takes a role away and that person's windows the role allowed close, saying
//! why in a window that stays (and, when none stays, in the one that opens in their place),
//! while the Staff window follows every step live. The person then changes their
//! password from the Window menu and stays signed in. Cut off from the server, the Staff
//! window says so, and an action tried anyway says nothing was changed.
//!
//! It also takes the Staff dashboard's picture for docs/ (`CLINIC_ADMIN_SCREENSHOT` names
//! the file; otherwise it goes to target/ and is only checked).

mod common;

use std::path::PathBuf;

use clinic_protocol::wire::paths;
use clinic_test_kit::{Proxy, TestServer};
use common::{App, Launch};
use serde_json::{json, Value};

/// The row of `username` in the Staff window, as `[state, roles]`, once it shows `state`.
async fn staff_row(app: &mut App, label: &str, username: &str, state: &str) -> Value {
    app.wait_for(
        label,
        &format!("{username}'s row to say {state}"),
        &format!(
            "const row = document.querySelector('#staff li[data-username=\"{username}\"]');
             return row && row.dataset.state === '{state}' ? [row.dataset.state, row.dataset.roles] : null"
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_makes_a_person_who_signs_in_and_loses_a_role() {
    let server = TestServer::start().await;
    // The administrator's desk reaches the server through a link the test can cut.
    let link = Proxy::start(server.addr()).await;
    let (mut desk, _desk_data) = common::signed_in(&link.url(), "admin").await;
    let staff = desk.window_like("admin-").await;
    desk.wait_for(
        &staff,
        "the staff list",
        "return document.querySelectorAll('#staff li[data-staff-id]').length > 1
             && document.querySelectorAll('#new-staff input[name=role]').length > 0",
    )
    .await;
    // The administrator's own account is listed, active, as theirs.
    assert_eq!(
        staff_row(&mut desk, &staff, "admin", "active").await,
        json!(["active", "admin"])
    );

    // A new person: operator and therapist.
    let fill = "const f = document.querySelector('form#new-staff');
         f.elements.username.value = arguments[0];
         f.elements.display_name.value = 'Nova Reed';
         for (const box of f.querySelectorAll('input[name=role]')) {
           if (box.checked !== ['operator', 'therapist'].includes(box.value)) box.click();
         }
         f.querySelector('button[type=submit]').click();
         return true";
    desk.eval(&staff, fill, vec![json!("nova")]).await;
    let one_time = desk
        .wait_for(
            &staff,
            "the one-time password, shown once",
            "const d = document.querySelector('#issued-dialog');
             const p = document.querySelector('#issued-password').textContent;
             return d.open && d.dataset.username === 'nova' && p ? p : null",
        )
        .await;
    let one_time = one_time.as_str().expect("a password").to_owned();
    assert!(
        one_time.chars().count() >= clinic_protocol::wire::MIN_PASSWORD_CHARS,
        "{one_time}"
    );
    // The account arrives through the feed, like any change.
    assert_eq!(
        staff_row(&mut desk, &staff, "nova", "must_change_password").await,
        json!(["must_change_password", "operator,therapist"])
    );
    // The password leaves the page with the dialog.
    desk.eval(
        &staff,
        "document.querySelector('#issued-dialog .btn-primary').click(); return true",
        vec![],
    )
    .await;
    // The dialog's `close` event comes as a task of its own: poll for it.
    desk.wait_for(
        &staff,
        "the one-time password to leave the page",
        "const d = document.querySelector('#issued-dialog');
         return !d.open && document.querySelector('#issued-password').textContent === ''",
    )
    .await;

    // The same username again: refused in words, and what was typed is kept.
    desk.eval(&staff, fill, vec![json!("nova")]).await;
    let refused = desk
        .wait_for(
            &staff,
            "the form to say the username is taken",
            "const e = document.querySelector('#new-staff-error');
             return e.dataset.code === 'username_taken' ? e.textContent : null",
        )
        .await;
    assert!(!refused.as_str().unwrap_or_default().is_empty());
    assert_eq!(
        desk.eval(
            &staff,
            "const f = document.querySelector('form#new-staff');
             return [f.elements.username.value, f.elements.display_name.value,
                     Array.from(f.querySelectorAll('input[name=role]:checked')).map(b => b.value)]",
            vec![],
        )
        .await,
        json!(["nova", "Nova Reed", ["operator", "therapist"]])
    );

    screenshot(&mut desk, &staff).await;

    // Nova, at the other desk: the one-time password, then one of her own.
    let nova_data = tempfile::tempdir().expect("tempdir");
    let mut nova = App::launch_beside(
        &desk,
        Launch {
            args: vec!["--server".into(), server.url()],
            env: vec![(
                "CLINIC_DESK_DATA_DIR".into(),
                nova_data.path().display().to_string(),
            )],
            measure: false,
        },
    )
    .await;
    nova.eval(
        "login",
        "const f = document.querySelector('form#login');
         f.elements.server.value = arguments[0];
         f.elements.username.value = 'nova';
         f.elements.password.value = arguments[1];
         f.querySelector('button[type=submit]').click();
         return true",
        vec![json!(server.url()), json!(one_time)],
    )
    .await;
    nova.wait_for(
        "login",
        "the login window to ask nova for a password of her own",
        "return document.querySelector('#login-error').dataset.code === 'password_change_required'",
    )
    .await;
    nova.eval(
        "login",
        "const f = document.querySelector('form#login');
         f.elements['new-password'].value = 'nova first password';
         f.elements['repeat-password'].value = 'nova first password';
         f.querySelector('button[type=submit]').click();
         return true",
        vec![],
    )
    .await;
    let operator = nova.window_like("operator-").await;
    let scheduling = nova.window_like("scheduling-").await;
    let therapist = nova.window_like("therapist-").await;
    // Her own password set, the account is active: live in the Staff window.
    staff_row(&mut desk, &staff, "nova", "active").await;

    // The administrator takes the operator role away.
    desk.eval(
        &staff,
        "document.querySelector('#staff li[data-username=nova] [data-action=edit-roles]').click();
         return true",
        vec![],
    )
    .await;
    desk.eval(
        &staff,
        "const row = document.querySelector('#staff li[data-username=nova]');
         const box = row.querySelector('.roles-editor input[value=operator]');
         if (box.checked) box.click();
         row.querySelector('.roles-editor button[type=submit]').click();
         return true",
        vec![],
    )
    .await;
    assert_eq!(
        desk.wait_for(
            &staff,
            "nova's roles to change",
            "const row = document.querySelector('#staff li[data-username=nova]');
             return row && row.dataset.roles === 'therapist' && !row.querySelector('.roles-editor')
               ? row.dataset.roles : null",
        )
        .await,
        json!("therapist")
    );

    // Nova's operator and scheduling windows close (scheduling came with operator); a
    // window that stays says why.
    let deadline = std::time::Instant::now() + common::DEADLINE;
    let labels = loop {
        let labels = nova.labels().await;
        if !labels.contains(&operator) && !labels.contains(&scheduling) {
            break labels;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nova's operator and scheduling windows are still open: {labels:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(labels.contains(&therapist), "{labels:?}");
    // The notice arrives as each page hears the event: poll every window that stays until
    // one of them says why.
    let deadline = std::time::Instant::now() + common::DEADLINE;
    let told = 'told: loop {
        for label in labels.iter().filter(|l| l.as_str() != "login") {
            let text = nova
                .eval(
                    label,
                    "const n = document.querySelector('.notice-sticky[data-kind=roles] .notice-body');
                     return n ? n.textContent : null",
                    vec![],
                )
                .await;
            if let Some(text) = text.as_str() {
                break 'told text.to_owned();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no window that stays says why the others closed: {labels:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        told.contains("Your roles changed")
            && told.contains("Operator")
            && told.contains("Scheduling"),
        "{told}"
    );
    // The Window menu of a window that stays follows the new roles.
    nova.wait_for(
        &therapist,
        "the Window menu to offer no operator window",
        "const offered = Array.from(document.querySelectorAll('[data-open]')).map(b => b.dataset.open);
         return offered.includes('therapist') && !offered.includes('operator')",
    )
    .await;

    // With only her therapist window left open, the administrator makes her a driver
    // instead: no window of hers stays, so the one that opens in their place says why.
    let messages = labels
        .iter()
        .find(|l| l.starts_with("messages-"))
        .cloned()
        .expect("nova's messages window");
    nova.eval(
        &messages,
        "window.__TAURI__.window.getCurrentWindow().close(); return true",
        vec![],
    )
    .await;
    let deadline = std::time::Instant::now() + common::DEADLINE;
    while nova.labels().await.contains(&messages) {
        assert!(
            std::time::Instant::now() < deadline,
            "nova's messages window did not close"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    desk.eval(
        &staff,
        "const row = document.querySelector('#staff li[data-username=nova]');
         row.querySelector('[data-action=edit-roles]').click();
         return true",
        vec![],
    )
    .await;
    desk.eval(
        &staff,
        "const row = document.querySelector('#staff li[data-username=nova]');
         for (const box of row.querySelectorAll('.roles-editor input[name=role]')) {
           if (box.checked !== (box.value === 'driver')) box.click();
         }
         row.querySelector('.roles-editor button[type=submit]').click();
         return true",
        vec![],
    )
    .await;
    desk.wait_for(
        &staff,
        "nova's roles to become driver",
        "const row = document.querySelector('#staff li[data-username=nova]');
         return row && row.dataset.roles === 'driver' && !row.querySelector('.roles-editor')",
    )
    .await;
    let driver = nova.window_like("driver-").await;
    let told = nova
        .wait_for(
            &driver,
            "the window that opened to say why the others closed",
            "const n = document.querySelector('.notice-sticky[data-kind=roles] .notice-body');
             return n ? n.textContent : null",
        )
        .await;
    assert!(
        told.as_str()
            .unwrap_or_default()
            .contains("My appointments")
            && told.as_str().unwrap_or_default().contains("Driver"),
        "{told}"
    );
    // The driver window opens before the others close: poll until the therapist one has.
    let deadline = std::time::Instant::now() + common::DEADLINE;
    while nova.labels().await.contains(&therapist) {
        assert!(
            std::time::Instant::now() < deadline,
            "nova's therapist window did not close"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Nova changes her password from the Window menu: a wrong current password is said in
    // the dialog and nothing typed is lost; then it is changed and she stays signed in.
    nova.click(&driver, ".menu-toggle").await;
    nova.click(&driver, ".menu-item.change-password").await;
    let change = "const f = document.querySelector('form#change-password');
         f.elements.current.value = arguments[0];
         f.elements.new.value = 'nova second password';
         f.elements.repeat.value = 'nova second password';
         f.querySelector('button[type=submit]').click();
         return true";
    nova.eval(&driver, change, vec![json!("not her password")])
        .await;
    nova.wait_for(
        &driver,
        "the dialog to say the current password is wrong",
        "return document.querySelector('#password-error').dataset.code === 'wrong_password'
             && document.querySelector('form#change-password').elements.new.value === 'nova second password'",
    )
    .await;
    nova.eval(&driver, change, vec![json!("nova first password")])
        .await;
    nova.wait_for(
        &driver,
        "the password to be changed",
        "return document.querySelector('#password-dialog').dataset.state === 'done'",
    )
    .await;
    let http = server.login("admin").await.http().clone();
    let status = |password: &str| {
        let http = http.clone();
        let url = format!("{}{}", server.url(), paths::LOGIN);
        let body = json!({"username": "nova", "password": password});
        async move {
            http.post(url)
                .json(&body)
                .send()
                .await
                .expect("sign in")
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("nova second password").await, 200);
    assert_eq!(status("nova first password").await, 401);
    // This app's own session goes on: still syncing, not told that its session ended.
    nova.wait_for(
        &driver,
        "nova's app to sync on",
        "return document.body.dataset.syncState === 'online'
             && document.querySelector('.account-state').dataset.state === 'ok'",
    )
    .await;

    // Offline, the Staff window says so before anyone tries, and an action that is tried
    // anyway says in words that nothing was changed.
    link.cut();
    desk.wait_for(
        &staff,
        "the Staff window to say it is offline",
        "return !document.querySelector('#staff-offline').hidden",
    )
    .await;
    desk.eval(
        &staff,
        "document.querySelector('#staff li[data-username=nova] [data-action=reset-password]').click();
         return true",
        vec![],
    )
    .await;
    let said = desk
        .wait_for(
            &staff,
            "the row to say the server cannot be reached",
            "const e = document.querySelector('#staff li[data-username=nova] .form-error');
             return e && e.dataset.code === 'unreachable' ? e.textContent : null",
        )
        .await;
    assert!(
        said.as_str()
            .unwrap_or_default()
            .contains("nothing was changed"),
        "{said}"
    );
    link.restore();

    nova.close().await;
    desk.close().await;
}

/// The Staff dashboard's picture, for docs/admin.png.
#[allow(clippy::print_stdout)]
async fn screenshot(app: &mut App, label: &str) {
    let client = app.window(label).await.clone();
    // Wide enough for the list and the new-person form side by side.
    client
        .set_window_rect(0, 0, 1100, 680)
        .await
        .expect("resize the Staff window");
    app.wait_for(
        label,
        "the form beside the list",
        "const r = document.querySelector('#new-staff').getBoundingClientRect();
         return r.width > 0 && r.left > document.querySelector('#staff').getBoundingClientRect().right",
    )
    .await;
    let png = client.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    assert!(png.len() > 10_000, "a real picture ({} bytes)", png.len());
    let target = std::env::var_os("CLINIC_ADMIN_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("admin.png"));
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).expect("screenshot dir");
    }
    std::fs::write(&target, png).expect("write the screenshot");
    println!("screenshot: {}", target.display());
}
