//! Which Redis failures are passing trouble of the infrastructure rather than of the work: a
//! connection dropped, refused or timed out, a server loading its data, out of memory under
//! `noeviction`, refusing writes after a failed save, read-only or without a primary during a
//! failover, busy with a script. A retry repeats a bug or a misuse (a wrong type, an unknown
//! command) but gets through these once Redis recovers, so they must never count against a run.
//! Also the short retry of one Redis call through them.
//!
//! This module must not know what is being retried, log, or decide outcomes.

use std::future::Future;
use std::time::Duration;

/// Server error codes that mean "not now", not "never".
const PASSING_CODES: [&str; 11] = [
    "OOM",
    "LOADING",
    "BUSY",
    "MISCONF",
    "READONLY",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    // A slot moving (a reshard, a failover) answers a pipeline's commands with these; the
    // cluster client learns the new map from them, and the next try goes to the new master.
    "MOVED",
    "ASK",
    "NOREPLICAS",
];
/// Tries of one call: the pauses between them add up to about 5 s, enough for a connection to
/// come back; a longer outage ends the attempt, which is refunded (see `crate::outcome`).
const TRIES: u32 = 6;
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// True when `error` is passing trouble of Redis or of the way to it.
pub fn is_transient(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.code().is_some_and(|code| PASSING_CODES.contains(&code))
        || error.to_string().contains("OOM command not allowed")
        || pipeline_passing(error)
}

/// A pipeline's failure, which redis-rs reports as its commands' server errors together (a
/// code it does not know, such as `OOM`, then has no `code()`): passing when every one is.
fn pipeline_passing(error: &redis::RedisError) -> bool {
    error.clone().into_server_errors().is_some_and(|errors| {
        !errors.is_empty() && errors.iter().all(|(_, error)| PASSING_CODES.contains(&error.code()))
    })
}

/// Runs `call` until it succeeds, fails for good, or `TRIES` (6) tries failed with passing
/// trouble. For idempotent calls only: a call whose reply was lost after Redis acted runs
/// again.
///
/// # Errors
/// The last error of `call`.
pub async fn retry<T, F, Fut>(mut call: F) -> Result<T, redis::RedisError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, redis::RedisError>>,
{
    let mut pause = FIRST_PAUSE;
    let mut tries = 1;
    loop {
        match call().await {
            Err(error) if tries < TRIES && is_transient(&error) => {
                tokio::time::sleep(pause.mul_f64(0.5 + fastrand::f64() / 2.0)).await;
                pause = (pause * 2).min(MAX_PAUSE);
                tries += 1;
            }
            res => return res,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: &str, detail: &str) -> redis::RedisError {
        redis::RedisError::from((redis::ErrorKind::Extension, "server", format!("{code} {detail}")))
    }

    #[test]
    fn a_dropped_connection_is_passing_and_a_wrong_type_is_not() {
        let dropped =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(is_transient(&dropped));
        let wrongtype = redis::RedisError::from((
            redis::ErrorKind::Extension,
            "WRONGTYPE",
            "Operation against a key holding the wrong kind of value".to_owned(),
        ));
        assert!(!is_transient(&wrongtype), "{wrongtype}");
        let oom = server_error("OOM", "command not allowed when used memory > 'maxmemory'.");
        assert!(is_transient(&oom), "{oom}");
    }

    #[tokio::test]
    async fn retry_gets_through_passing_trouble_and_stops_at_a_bug() {
        let mut n_calls = 0;
        let res = retry(|| {
            n_calls += 1;
            let failing = n_calls < 3;
            async move {
                if failing {
                    Err(redis::RedisError::from(std::io::Error::from(
                        std::io::ErrorKind::BrokenPipe,
                    )))
                } else {
                    Ok(n_calls)
                }
            }
        })
        .await;
        assert_eq!(res.unwrap(), 3);
        let mut n_calls = 0;
        let res: Result<(), _> = retry(|| {
            n_calls += 1;
            async { Err(server_error("WRONGTYPE", "wrong kind of value")) }
        })
        .await;
        assert!(res.is_err());
        assert_eq!(n_calls, 1, "a bug is not retried");
    }
}
