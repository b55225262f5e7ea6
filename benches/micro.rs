//! Criterion micro-benchmarks of the hot pure code on a run's path.
//!
//! `redact`: one transcript line against 10, 1,000 and 10,000 registered tokens. A worker
//! registers a token per run, and redaction used to search for each of them in every line
//! (84 % of a busy worker's CPU); the times must stay flat as the count grows.
//! `retry_delay`: the backoff computation of every retry.
//!
//! `cargo bench --bench micro`; results and their reading are in `benches/README.md`.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use agentcron::backoff::RetryPolicy;
use agentcron::telemetry::Redactor;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

/// A JWT-shaped token, distinct for each `i`, about as long as Scalekit's.
fn token(i: usize) -> String {
    let signature: String = (0..43)
        .map(|k| char::from(b'a' + u8::try_from((i * 7 + k * 13) % 26).unwrap_or(0)))
        .collect();
    format!("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLXtpfSJ9.{i:08}{signature}")
}

/// A transcript line like the pipeline writes: about 1 KB of JSON, no secret in it.
fn line() -> String {
    let text = "Lea Martin emailed you about the quarterly review. ".repeat(16);
    format!(
        r#"{{"ts":"2026-11-26T05:00:00.000Z","run_id":"r-1","user":"alice@example.com","type":"agent.message","data":{{"content":[{{"type":"text","text":"{text}"}}]}}}}"#
    )
}

fn redact(c: &mut Criterion) {
    let mut group = c.benchmark_group("redact_1kb_line");
    let line = line();
    let until = SystemTime::now() + Duration::from_secs(3600);
    for n in [10, 1_000, 10_000] {
        let redactor = Redactor::default();
        let tokens: Vec<String> = (0..n).map(token).collect();
        for token in &tokens {
            redactor.add_expiring(token.clone(), until);
        }
        group.bench_with_input(BenchmarkId::new("tokens", n), &line, |b, line| {
            b.iter(|| redactor.redact(black_box(line)).len());
        });
        // The baseline: what redaction did before, one substring search per known token.
        group.bench_with_input(BenchmarkId::new("search_each_token", n), &line, |b, line| {
            b.iter(|| {
                tokens.iter().filter(|token| black_box(line).contains(token.as_str())).count()
            });
        });
    }
    group.finish();
}

fn retry_delay(c: &mut Criterion) {
    // The `[retry]` defaults.
    let policy = RetryPolicy {
        initial: Duration::from_millis(500),
        max_interval: Duration::from_secs(30),
        max_elapsed: Duration::from_secs(300),
        multiplier: 2.0,
        jitter: true,
        max_attempts: 8,
        budget: None,
    };
    c.bench_function("retry_delay", |b| {
        b.iter(|| policy.delay(black_box(3), black_box(0.5)));
    });
}

criterion_group!(benches, redact, retry_delay);
criterion_main!(benches);
