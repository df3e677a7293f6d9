//! Accounts in the real app (through tauri-driver, real WebKit windows): a new account made
//! by an administrator signs in with its one-time password, is asked in the login window
//! for a password of its own, and gets its dashboards once it has chosen one.

mod common;

use clinic_protocol::wire::paths;
use clinic_test_kit::TestServer;
use common::{App, Launch};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_account_chooses_its_password_at_first_sign_in() {
    let server = TestServer::start().await;
    let admin = server.login("admin").await;
    let made: Value = admin
        .http()
        .post(format!("{}{}", server.url(), paths::STAFF))
        .bearer_auth(&admin.login.token)
        .json(&json!({"username": "nova", "display_name": "Nova Reed", "roles": ["operator"]}))
        .send()
        .await
        .expect("create nova")
        .json()
        .await
        .expect("the new account");
    let one_time = made["one_time_password"]
        .as_str()
        .expect("a one-time password");

    let data = tempfile::tempdir().expect("tempdir");
    let mut app = App::launch(Launch {
        args: vec!["--server".into(), server.url()],
        env: vec![(
            "CLINIC_DESK_DATA_DIR".into(),
            data.path().display().to_string(),
        )],
        measure: false,
    })
    .await;
    app.eval(
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
    app.wait_for(
        "login",
        "the form to ask for a password of nova's own",
        "const e = document.querySelector('#login-error');
         return e.dataset.code === 'password_change_required'
           && !document.querySelector('.choose-password').hidden",
    )
    .await;

    // Two different new passwords are caught in the form; a short one by the server.
    for (new, again, code) in [
        ("a long new password", "another one", "passwords_differ"),
        ("short", "short", "password_too_short"),
    ] {
        app.eval(
            "login",
            "const f = document.querySelector('form#login');
             f.elements['new-password'].value = arguments[0];
             f.elements['repeat-password'].value = arguments[1];
             f.querySelector('button[type=submit]').click();
             return true",
            vec![json!(new), json!(again)],
        )
        .await;
        app.wait_for(
            "login",
            &format!("the form to say {code}"),
            &format!("return document.querySelector('#login-error').dataset.code === '{code}'"),
        )
        .await;
    }

    app.eval(
        "login",
        "const f = document.querySelector('form#login');
         f.elements['new-password'].value = 'a long new password';
         f.elements['repeat-password'].value = 'a long new password';
         f.querySelector('button[type=submit]').click();
         return true",
        vec![],
    )
    .await;
    let operator = app.window_like("operator-").await;
    app.wait_for(
        &operator,
        "nova's operator dashboard",
        "return document.body.dataset.ready === 'true'",
    )
    .await;
    // The new password is nova's now, and the one-time one is spent.
    let login = |password: &str| {
        let password = password.to_owned();
        let http = admin.http().clone();
        let url = format!("{}{}", server.url(), paths::LOGIN);
        async move {
            http.post(url)
                .json(&json!({"username": "nova", "password": password}))
                .send()
                .await
                .expect("sign in")
                .status()
        }
    };
    assert!(login("a long new password").await.is_success());
    assert_eq!(login(one_time).await.as_u16(), 401);
    app.close().await;
}

/// Disabling an account reaches its open app at once: every window says so in words, and
/// nothing is lost on the way (the engine keeps its outbox; its tests check that).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_account_is_told_in_its_windows() {
    let server = TestServer::start().await;
    let (mut app, _data) = common::signed_in(&server.url(), "olivia").await;
    let operator = app.window_like("operator-").await;
    app.wait_for(
        &operator,
        "olivia's dashboard",
        "return document.body.dataset.ready === 'true'",
    )
    .await;
    let state = "return document.querySelector('.account-state').dataset.state";
    assert_eq!(app.eval(&operator, state, vec![]).await, json!("ok"));

    let admin = server.login("admin").await;
    let olivia = admin
        .snapshot()
        .await
        .records
        .into_iter()
        .filter_map(clinic_protocol::Record::into_staff)
        .find(|s| s.username == "olivia")
        .expect("olivia");
    let answer = admin
        .http()
        .patch(format!(
            "{}{}",
            server.url(),
            paths::staff_member(olivia.id)
        ))
        .bearer_auth(&admin.login.token)
        .json(&json!({"disabled": true, "version": olivia.version}))
        .send()
        .await
        .expect("disable olivia");
    assert!(answer.status().is_success(), "{}", answer.status());

    let told = app
        .wait_for(
            &operator,
            "the window to say the account was disabled",
            "const p = document.querySelector('.account-state');
             return p.dataset.state === 'disabled' && !p.hidden ? p.textContent : null",
        )
        .await;
    assert!(
        told.as_str()
            .unwrap_or_default()
            .contains("disabled by an administrator"),
        "{told}"
    );
    app.close().await;
}
