//! The process's root cancellation: SIGINT and SIGTERM cancel one [`CancellationToken`] that
//! every subsystem watches through a child token, so shutdown starts at the head of the flow
//! (stop ticking, stop fetching) and drains from there.
//!
//! This module must not decide what each subsystem does on shutdown.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// A token cancelled at the first SIGINT or SIGTERM.
///
/// The listening task ends when a signal arrives or the token is cancelled otherwise, so it
/// never outlives its purpose.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn on_signals() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!(message = "SIGINT received; shutting down."),
            _ = terminate.recv() => tracing::info!(message = "SIGTERM received; shutting down."),
            () = cancel.cancelled() => return,
        }
        cancel.cancel();
    });
    Ok(token)
}
