//! The `agentcron` binary: parse the command line, set up logging, run the library, and turn
//! the outcome into an exit code (0 success, 1 failure, 2 usage; `cli::exit` has the others).
//! Nothing else lives here.

use std::process::ExitCode;

use clap::Parser;

use agentcron::cli::{self, Cli};
use agentcron::telemetry::{self, Redactor};

// mimalloc rather than glibc's malloc: see the README's dependency section for the numbers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Threads for blocking work (file appends, DNS lookups).
const BLOCKING_THREADS: usize = 16;

fn main() -> ExitCode {
    quiet_on_a_closed_pipe();
    let cli = Cli::parse();
    let redactor = Redactor::default();
    // mimalloc 3 asks for transparent huge pages on its arenas: a worker holding 10,000
    // sessions peaked at 500 MB with them and 370–380 MB without (`benches/README.md`).
    // Turning them off for the process is what mimalloc's own `MIMALLOC_ALLOW_THP=0` does,
    // without unsafe code; where the kernel refuses, huge pages only cost memory. Before the
    // runtime's threads and arenas; logged once logging is up.
    #[cfg(target_os = "linux")]
    let thp = rustix::thread::disable_transparent_huge_pages(true);
    // Transcript appends go to the blocking pool, one short task per event; tokio's default
    // of up to 512 threads let 10,000 streaming sessions start hundreds, each with its own
    // stack and allocator heap. A few threads keep up with them.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            report(&redactor, &anyhow::Error::new(error).context("starting the async runtime"));
            return ExitCode::from(cli::exit::FAILURE);
        }
    };
    // Inside the runtime: the trace exporter, when the environment asks for one, runs on it.
    let entered = runtime.enter();
    let mut traces = match telemetry::init(cli.log_format, redactor.clone()) {
        Ok(traces) => traces,
        Err(error) => {
            report(&redactor, &anyhow::Error::new(error));
            return ExitCode::from(cli::exit::FAILURE);
        }
    };
    drop(entered);
    #[cfg(target_os = "linux")]
    if let Err(error) = thp {
        tracing::debug!(message = "Transparent huge pages stay on.", %error);
    }
    let code = match runtime.block_on(cli::dispatch(cli, &redactor)) {
        Ok(code) => code,
        Err(error) if closed_pipe(&error) => ExitCode::from(cli::exit::OK),
        Err(error) => {
            report(&redactor, &error);
            ExitCode::from(cli::exit::FAILURE)
        }
    };
    // After the command (a worker's drain after SIGTERM included) and before the runtime
    // goes: the last spans are exported on it.
    traces.shutdown();
    code
}

/// Prints an error and its causes, each once, redacted: a cause whose words its error already
/// says (a Redis error that repeats its I/O error, a context that quotes its cause) is not
/// said again.
#[allow(clippy::print_stderr)] // The binary's last word goes to stderr whatever the log filter.
fn report(redactor: &Redactor, error: &anyhow::Error) {
    eprintln!("error: {}", redactor.redact(&chain(error)));
}

fn chain(error: &anyhow::Error) -> String {
    let mut said: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !text.is_empty() && !said.iter().any(|earlier| earlier.contains(&text)) {
            said.push(text);
        }
    }
    said.join(": ")
}

/// A reader that went away (`agentcron runs | head -1`) ends the command quietly with exit 0,
/// as Unix tools do: `println!` panics when stdout is closed, so the panic hook ends the process
/// for that panic alone (every other panic is reported as before).
fn quiet_on_a_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let text = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if text.starts_with("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Whether the command failed because its reader went away (a write that met `EPIPE`).
fn closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
