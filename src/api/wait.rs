//! Time a task spends waiting on the remote APIs, so that a run's own overhead (its wall time
//! minus that waiting) can be measured: `agentcron_run_overhead_seconds` and `bench runs`.
//!
//! [`measure`] opens an accumulator for the task that awaits it; [`waiting`] adds the time
//! its future was pending (until it finished or was dropped) to the innermost accumulator,
//! and a finished [`measure`] adds its total to the one around it. Outside any [`measure`],
//! [`waiting`] only awaits. This module must not decide what counts as remote: callers wrap
//! requests, retry pauses and event-stream reads.

use std::cell::Cell;
use std::time::{Duration, Instant};

tokio::task_local! {
    static WAITED: Cell<Duration>;
}

/// Runs `future` and returns its output with the time spent inside [`waiting`] meanwhile.
///
/// Pass a large future boxed (`Box::pin`): rustc keeps both an async fn's parameter and the
/// future it awaits in its state (rust-lang/rust#62958), and wrapping the 16 KB run pipeline
/// unboxed, twice, nearly doubled a worker's memory per in-flight run (499 → 919 MB at
/// 10,000 runs).
pub async fn measure<F: Future>(future: F) -> (F::Output, Duration) {
    let (output, waited) = WAITED
        .scope(Cell::new(Duration::ZERO), async {
            let output = future.await;
            (output, WAITED.with(Cell::get))
        })
        .await;
    add(waited);
    (output, waited)
}

/// Awaits `future`, counting the time as waiting on a remote API.
pub async fn waiting<F: Future>(future: F) -> F::Output {
    let _clock = Clock::start();
    future.await
}

/// Counts the time from [`Clock::start`] until it is dropped as waiting on a remote API. A
/// guard, so that a future dropped before it finishes (an arm of a `select!` that lost) still
/// counts the time it waited; also usable where wrapping a future in [`waiting`] would hide
/// its lifetimes from rustc's `Send` check.
#[derive(Debug)]
pub struct Clock(Instant);

impl Clock {
    /// Starts counting.
    pub fn start() -> Self {
        Self(Instant::now())
    }
}

impl Drop for Clock {
    fn drop(&mut self) {
        add(self.0.elapsed());
    }
}

fn add(elapsed: Duration) {
    // Outside a `measure` there is nothing to add to, which is fine.
    let _outside = WAITED.try_with(|waited| waited.set(waited.get() + elapsed));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_are_counted_nested_and_when_dropped() {
        let pause = Duration::from_millis(30);
        let blocked = Duration::from_millis(20);
        let started = Instant::now();
        let ((), outer) = measure(async {
            let ((), inner) = measure(waiting(tokio::time::sleep(pause))).await;
            assert!(inner >= pause, "{inner:?}");
            // Work outside `waiting` is not counted.
            std::thread::sleep(blocked);
            // A wait that loses a race still counts the time it waited.
            tokio::select! {
                () = waiting(tokio::time::sleep(Duration::from_secs(60))) => {}
                () = tokio::time::sleep(pause) => {}
            }
        })
        .await;
        let total = started.elapsed();
        assert!(outer >= pause * 2, "{outer:?}");
        // Whatever the machine's load, the blocked time lies outside every wait.
        assert!(outer + blocked <= total, "the blocked time counted: {outer:?} of {total:?}");
    }

    #[tokio::test]
    async fn outside_measure_waiting_only_awaits() {
        assert_eq!(waiting(async { 7 }).await, 7);
    }
}
