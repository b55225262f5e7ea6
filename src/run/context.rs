//! What every run of a worker shares: the configuration, Redis, both API clients, the setup
//! ids, the redactor and the fleet-wide rate limiter, built once from the configuration; and
//! the pacer that makes the Anthropic client take from the limiter before every request. This
//! module must not run a phase.

use std::sync::Arc;

use crate::config::RedisConn;

use super::{FailPoint, Run, RunError};
use crate::api::pace::{Pacer, RateClass, Turn};
use crate::api::{ApiError, anthropic, scalekit};
use crate::backoff::RetryPolicy;
use crate::config::{Config, LimitsConfig};
use crate::keys::Keys;
use crate::outcome::ErrorClass;
use crate::ratelimit::RateLimiter;
use crate::setup::{self, SetupError};
use crate::telemetry::Redactor;

/// Everything a run needs, shared by all runs of a worker.
#[derive(Debug, Clone)]
pub struct Context {
    /// The configuration.
    pub config: Arc<Config>,
    /// Key templates.
    pub keys: Keys,
    /// Redis (multiplexed, reconnecting).
    pub redis: RedisConn,
    /// Scalekit.
    pub scalekit: Arc<scalekit::Client>,
    /// Anthropic.
    pub anthropic: anthropic::Client,
    /// The ids created by `setup`, replaced when the worker learns new ones.
    pub setup: setup::Current,
    /// Learns every minted token so that no output shows it.
    pub redactor: Redactor,
    /// For the notice webhook.
    pub http: reqwest::Client,
    /// The fleet-wide rate limiter (`[limits]`); the Anthropic client paces through it.
    pub limiter: RateLimiter,
    /// Test hook; `None` in production.
    pub fail_point: Option<FailPoint>,
}

impl Context {
    /// Builds the clients from the configuration and loads the setup ids from Redis.
    ///
    /// # Errors
    /// [`RunError`] when credentials are missing or Redis is unreachable. Setup that has not run
    /// is not an error: runs wait for it (see `setup_missing`).
    pub async fn connect(config: Arc<Config>, redactor: Redactor) -> Result<Self, RunError> {
        let redis_config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(std::time::Duration::from_secs(5)))
            .set_connection_timeout(Some(std::time::Duration::from_secs(5)));
        let mut redis = config.redis.connect(redis_config).await.map_err(RunError::Connect)?;
        let keys = config.redis.keys();
        let setup = match setup::load(&mut redis, &keys).await {
            Ok(ids) => setup::Current::new(ids),
            // Setup never ran for this prefix, or Redis lost its data: exiting would be a crash
            // loop under a supervisor. Runs wait instead, and `/readyz` says why, until
            // `agentcron setup` stores the ids (or `setup.auto` makes them).
            Err(SetupError::Missing) => {
                tracing::error!(
                    message = "No setup ids are stored for this prefix; runs wait until `agentcron setup` runs (or setup.auto makes them).",
                    prefix = keys.prefix()
                );
                let detail = "no setup ids are stored for this prefix";
                setup::report_missing(&mut redis, &keys, "setup", detail).await?;
                setup::Current::unset()
            }
            Err(error) => return Err(error.into()),
        };
        let (scalekit, anthropic, http) = clients(&config)?;
        let limiter = RateLimiter::new(redis.clone(), keys.clone());
        let anthropic = paced(anthropic, &config.limits, &limiter);
        Ok(Self {
            config,
            keys,
            redis,
            scalekit: Arc::new(scalekit),
            anthropic,
            setup,
            redactor,
            http,
            limiter,
            fail_point: None,
        })
    }
}

/// Both API clients and the plain HTTP client, from the configuration's credentials.
///
/// # Errors
/// [`RunError`] when a credential is missing or TLS cannot start.
pub fn clients(
    config: &Config,
) -> Result<(scalekit::Client, anthropic::Client, reqwest::Client), RunError> {
    let missing = |var: &str| RunError::Setup(SetupError::Credentials(var.to_owned()));
    let http = crate::api::http_client(&config.http)?;
    let policy = RetryPolicy::from(&config.retry);
    let secrets = &config.secrets;
    let client_id =
        secrets.scalekit_client_id.clone().ok_or_else(|| missing("SCALEKIT_CLIENT_ID"))?;
    let secret =
        secrets.scalekit_client_secret.clone().ok_or_else(|| missing("SCALEKIT_CLIENT_SECRET"))?;
    let key = secrets.anthropic_api_key.as_ref().ok_or_else(|| missing("ANTHROPIC_API_KEY"))?;
    let scalekit =
        scalekit::Client::new(http.clone(), &config.scalekit.env_url, client_id, secret, policy);
    let anthropic =
        anthropic::Client::new(http.clone(), &config.anthropic.base_url, key, policy, &config.http);
    Ok((scalekit, anthropic, http))
}

/// The shared HTTP client of `[http]`, for calls that are not the vendors' (the worker's run
/// webhook).
///
/// # Errors
/// [`RunError`] when the client cannot be built.
pub fn http_client(config: &Config) -> Result<reqwest::Client, RunError> {
    Ok(crate::api::http_client(&config.http)?)
}

/// `anthropic`, waiting before every request (each attempt) for a turn in the fleet-wide
/// bucket of the request's class, `<p>:ratelimit:creates`, `requests` or `environments`, at
/// the rates of `[limits]`; as it is when every one of those rates is off.
pub fn paced(
    anthropic: anthropic::Client,
    limits: &LimitsConfig,
    limiter: &RateLimiter,
) -> anthropic::Client {
    match fleet_pacer(limits, limiter) {
        Some(pacer) => anthropic.with_pacer(pacer),
        None => anthropic,
    }
}

/// The fleet-wide pacer of `[limits]`; `None` when every Anthropic rate is off.
fn fleet_pacer(limits: &LimitsConfig, limiter: &RateLimiter) -> Option<Arc<dyn Pacer>> {
    let per_minute =
        [limits.creates_per_minute, limits.requests_per_minute, limits.environments_per_minute];
    if per_minute.iter().all(Option::is_none) {
        return None;
    }
    Some(Arc::new(FleetPacer { limiter: limiter.clone(), per_minute }))
}

/// Anthropic's rate classes, each with its bucket in Redis.
#[derive(Debug)]
struct FleetPacer {
    limiter: RateLimiter,
    /// Creates, requests and environment calls per minute; `None` for no limit.
    per_minute: [Option<f64>; 3],
}

impl FleetPacer {
    fn per_minute(&self, class: RateClass) -> Option<f64> {
        match class {
            RateClass::Create => self.per_minute[0],
            RateClass::Request => self.per_minute[1],
            RateClass::Environment => self.per_minute[2],
        }
    }
}

impl Pacer for FleetPacer {
    fn refused(&self, class: RateClass, pause: std::time::Duration) -> Turn<'_> {
        let per_minute = self.per_minute(class);
        Box::pin(async move {
            let Some(per_minute) = per_minute else { return Ok(()) };
            let drained = self.limiter.drain(class.as_str(), per_minute / 60.0, pause).await;
            drained.map_err(|error| error.to_string())
        })
    }

    fn turn(&self, class: RateClass) -> Turn<'_> {
        let per_minute = self.per_minute(class);
        Box::pin(async move {
            let Some(per_minute) = per_minute else { return Ok(()) };
            let limited = self.limiter.acquire(class.as_str(), per_minute / 60.0).await;
            limited.map_err(|error| error.to_string())
        })
    }
}

/// Waits for the fleet-wide rate of `name` (`sessions` or `tokens`) when one is configured.
pub(super) async fn throttle(
    ctx: &Context,
    name: &'static str,
    rate: Option<f64>,
) -> Result<(), RunError> {
    if let Some(rate) = rate {
        ctx.limiter.acquire(name, rate).await?;
    }
    Ok(())
}

/// After single attempt number `retry` of a call that must not be repeated blindly failed:
/// returns the error when retrying cannot help or the attempts are used up; else waits the
/// backoff (or the delay the API asked for) and returns, so that the caller can check whether
/// the failed attempt took effect after all before trying again.
///
/// # Errors
/// The call's error, when it is not to be retried.
pub(super) async fn pause_before_retry(
    policy: &RetryPolicy,
    retry: u32,
    error: ApiError,
    what: &'static str,
) -> Result<(), RunError> {
    if error.class() != ErrorClass::Transient || retry + 1 >= policy.max_attempts {
        return Err(error.into());
    }
    let delay = error.retry_after().unwrap_or_else(|| policy.delay(retry, fastrand::f64()));
    tracing::warn!(message = "A call that must not be repeated blindly failed; checking whether it landed before retrying.", call = what, %error, attempt = retry + 1);
    tokio::time::sleep(delay).await;
    Ok(())
}

/// The retry policy, and the Anthropic client with single attempts for `run`'s creates and
/// sends: each checks the attempt's fence last, after its rate-limit turn (see `fence::Guard`).
pub(super) fn single_attempts(ctx: &Context, run: &Run) -> (RetryPolicy, anthropic::Client) {
    let policy = RetryPolicy::from(&ctx.config.retry);
    let once = ctx.anthropic.with_policy(RetryPolicy { max_attempts: 1, ..policy });
    let Some(fence) = run.fence else { return (policy, once) };
    let guard = super::fence::Guard {
        inner: fleet_pacer(&ctx.config.limits, &ctx.limiter),
        redis: ctx.redis.clone(),
        key: ctx.keys.run(&run.id),
        fence,
    };
    (policy, once.with_pacer(Arc::new(guard)))
}
