//! The README's screenshot: the demo's dashboards side by side, taken from the real app
//! under Xvfb. `cargo xtask screenshot` runs this and keeps the picture as
//! docs/screenshot.png; in the normal test run it goes to target/ and is only checked.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{App, Launch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stdout)]
async fn the_demo_opens_dashboards_side_by_side() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut app = App::launch(Launch {
        args: vec!["--demo".into()],
        env: vec![(
            "CLINIC_DESK_DATA_DIR".into(),
            data.path().display().to_string(),
        )],
        measure: false,
    })
    .await;
    // The demo signs in as the clinic's owner (operator and therapist at once).
    let mut labels = Vec::new();
    for prefix in ["operator-", "therapist-", "scheduling-", "messages-"] {
        labels.push(app.window_like(prefix).await);
    }
    for label in &labels {
        app.wait_for(label, "rows rendered", "return document.body.dataset.ready === 'true' && document.querySelectorAll('[data-booking-id], [data-peer-id], [data-slot-id]').length > 0").await;
    }
    // Dashboards do not overlap: each has its own quarter of the screen.
    let mut rects = Vec::new();
    for label in &labels {
        let client = app.window(label).await.clone();
        let (x, y, w, h) = client.get_window_rect().await.expect("window rect");
        rects.push((x, y, w, h));
    }
    for (i, a) in rects.iter().enumerate() {
        for b in &rects[i + 1..] {
            let overlap = a.0 < b.0 + b.2 && b.0 < a.0 + a.2 && a.1 < b.1 + b.3 && b.1 < a.1 + a.3;
            assert!(!overlap, "windows overlap: {a:?} {b:?}");
        }
    }

    let target = std::env::var_os("CLINIC_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshot.png"));
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).expect("screenshot dir");
    }
    // The whole virtual screen, all windows as laid out (ImageMagick's `import`).
    let status = Command::new("import")
        .args(["-window", "root"])
        .arg(&target)
        .status()
        .expect("run `import` (ImageMagick; `cargo xtask test` installs it)");
    assert!(status.success(), "import failed");
    let bytes = std::fs::read(&target).expect("screenshot written");
    assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
    assert!(
        bytes.len() > 20_000,
        "a real picture, not a blank screen ({} bytes)",
        bytes.len()
    );
    println!("screenshot: {}", target.display());
    app.close().await;
}
