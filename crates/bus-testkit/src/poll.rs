//! Waiting for a condition instead of sleeping: tests poll what they expect with a deadline.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is polled.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Polls `check` until it yields `Some` and returns the value, or gives up after `timeout`
/// with `None`.
pub async fn poll<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Polls `check` until it yields `Some` and returns the value; panics naming `what` after
/// `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll(timeout, check).await {
        Some(value) => value,
        None => panic!("timed out after {timeout:?} waiting for: {what}"),
    }
}

/// Polls the yes/no `check` until it holds; panics naming `what` after `timeout`.
pub async fn until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually(what, timeout, || {
        let answer = check();
        async move { answer.await.then_some(()) }
    })
    .await
}

/// Polls the yes/no `check` until it holds or `timeout` passes; returns whether it held.
pub async fn poll_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll(timeout, || {
        let answer = check();
        async move { answer.await.then_some(()) }
    })
    .await
    .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn polling_returns_once_the_condition_holds() {
        let calls = AtomicUsize::new(0);
        let value = eventually("the third call", Duration::from_secs(5), || async {
            (calls.fetch_add(1, Ordering::SeqCst) == 2).then_some(42)
        })
        .await;
        assert_eq!((value, calls.load(Ordering::SeqCst)), (42, 3));
    }

    #[tokio::test]
    async fn polling_gives_up_after_the_timeout() {
        assert!(!poll_until(Duration::from_millis(50), || async { false }).await);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for: never")]
    async fn until_names_what_it_waited_for() {
        until("never", Duration::from_millis(30), || async { false }).await;
    }
}
