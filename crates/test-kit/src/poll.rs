//! Waiting for a state with a deadline: check, and check again a moment later, until it
//! holds or the deadline passes. A test never sleeps a guessed time: that is slow on a fast
//! machine and flaky on a loaded one.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long an expected state may take to appear. Generous, because the machines that run
/// the tests are shared; a state that never appears still fails the test.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// How long to wait between two checks.
const EVERY: Duration = Duration::from_millis(20);

/// Checks `probe` until it yields a value, and returns it; panics, naming `what`, if
/// [`DEADLINE`] passes first.
pub async fn poll_until<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    poll_within(DEADLINE, what, probe).await
}

/// [`poll_until`] with another deadline (a cold WebKit window takes longer than a server).
pub async fn poll_within<T, F, Fut>(deadline: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(EVERY).await;
    }
}

/// Checks `check` until it holds; panics, naming `what`, if [`DEADLINE`] passes first.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let probe = || {
        let holds = check();
        async move { holds.await.then_some(()) }
    };
    poll_until(what, probe).await;
}
