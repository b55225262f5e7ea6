//! Token budgets: how many tokens (of every kind) a user's runs, and a schedule's runs, may use
//! per UTC day and per UTC month. `[budget]` sets each user's default, the user's profile
//! (`budget_daily_tokens`, `budget_monthly_tokens`; 0 for none) overrides it, and each
//! `[[schedule]]` may set its own for all its runs. What was used is read from the per-day
//! aggregates (`<p>:tokens:<day>`, where a run's usage is added to the day it was created).
//!
//! A run that would start over a budget is not started: it ends `skipped`, and the user's
//! `budget` notice is opened (once: later skips refresh it, and the first run of the user to
//! start within its budgets resolves it, so a new period opens a new one). A run that crosses
//! a budget during its turn finishes, and the overrun is recorded on it (`budget_overrun`).
//!
//! This module decides nothing about retries and writes no run state: the outcome table and
//! the queue record the skip.

use chrono::Utc;

use super::connections::notify;
use super::{Context, Run, RunError};
use crate::config::RedisConn;
use crate::records::{notice, tally};
use crate::telemetry::metrics;
use crate::users::{self, Profile};

/// The name of the notice a skip opens, in place of a connection's.
pub(crate) const NOTICE: &str = "budget";

/// A budget that is spent: which one, how much it allows and how much was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spent {
    /// `user_daily`, `user_monthly`, `schedule_daily` or `schedule_monthly`.
    pub(crate) limit: &'static str,
    /// Tokens the budget allows.
    pub(crate) allowed: u64,
    /// Tokens used in its period.
    pub(crate) used: u64,
}

impl Spent {
    /// For the record and the notice: `user_daily: 120345 of 100000 tokens used`.
    pub(crate) fn detail(&self) -> String {
        let Self { limit, allowed, used } = self;
        format!("{limit}: {used} of {allowed} tokens used")
    }
}

/// The budgets that apply to `run`, each with what its period used so far; and whether the
/// user's budget notice is open.
async fn standing(
    ctx: &Context,
    conn: &mut RedisConn,
    run: &Run,
) -> Result<(Vec<Spent>, bool), RunError> {
    let (fields, noticed): (Vec<Option<String>>, Option<f64>) = redis::pipe()
        .cmd("HMGET")
        .arg(ctx.keys.profile(&run.user))
        .arg(users::BUDGET_DAILY)
        .arg(users::BUDGET_MONTHLY)
        .cmd("ZSCORE")
        .arg(ctx.keys.notice_index())
        .arg(notice::member(run.user.as_str(), NOTICE))
        .query_async(conn)
        .await?;
    let names = [users::BUDGET_DAILY, users::BUDGET_MONTHLY];
    let set = names.into_iter().zip(fields).filter_map(|(name, v)| Some((name.to_owned(), v?)));
    let profile = Profile::from_fields(set);
    let own = &ctx.config.budget;
    let some = |tokens: Option<u64>| tokens.filter(|tokens| *tokens > 0);
    let user = [
        some(profile.budget_daily_tokens.or(own.daily_tokens)),
        some(profile.budget_monthly_tokens.or(own.monthly_tokens)),
    ];
    let schedule = ctx.config.schedules.iter().find(|s| Some(&s.name) == run.schedule.as_ref());
    let schedule = schedule
        .map_or([None, None], |s| [some(s.budget_daily_tokens), some(s.budget_monthly_tokens)]);
    if user.iter().chain(&schedule).all(Option::is_none) {
        return Ok((Vec::new(), noticed.is_some()));
    }
    let mut groups = vec![format!("user:{}", run.user)];
    if let Some(name) = run.schedule.as_ref().filter(|_| schedule.iter().any(Option::is_some)) {
        groups.push(format!("schedule:{name}"));
    }
    let days = tally::month_so_far(Utc::now().date_naive());
    let used = tally::day_tokens(conn, &ctx.keys, &days, &groups).await?;
    let today = |group: usize| used.last().and_then(|row| row.get(group)).copied().unwrap_or(0);
    let month = |group: usize| used.iter().filter_map(|row| row.get(group)).sum::<u64>();
    let limits = [
        ("user_daily", user[0], today(0)),
        ("user_monthly", user[1], month(0)),
        ("schedule_daily", schedule[0], today(1)),
        ("schedule_monthly", schedule[1], month(1)),
    ];
    let spent = limits
        .into_iter()
        .filter_map(|(limit, allowed, used)| Some(Spent { limit, allowed: allowed?, used }))
        .collect();
    Ok((spent, noticed.is_some()))
}

/// Whether `run` may start: `Some` with the first budget it would go over (the user's notice
/// opened or refreshed, the skip counted), else `None` (the user's notice resolved if open).
///
/// # Errors
/// [`RunError`] when Redis fails.
pub(super) async fn check(
    ctx: &Context,
    conn: &mut RedisConn,
    run: &Run,
) -> Result<Option<Spent>, RunError> {
    let (budgets, noticed) = standing(ctx, conn, run).await?;
    let Some(spent) = budgets.into_iter().find(|b| b.used >= b.allowed) else {
        if noticed {
            let keep = ctx.config.retention.runs;
            let at = (&run.user, NOTICE);
            if let Some(event) = notice::resolve(conn, &ctx.keys, at, &run.id, keep).await? {
                notify(ctx, &event).await;
            }
        }
        return Ok(None);
    };
    let detail = spent.detail();
    let fields = (&run.user, NOTICE, detail.as_str(), "");
    let event = notice::open(conn, &ctx.keys, fields, &run.id).await?;
    if event.event == "opened" {
        notify(ctx, &event).await;
    }
    metrics::run_skipped("budget", spent.limit);
    tracing::info!(message = "Run skipped: over budget.", run_id = %run.id, user = %run.user, budget = %detail);
    Ok(Some(spent))
}

/// After a turn: records on the run each budget its turn took over (`budget_overrun`), for
/// the operator to see that a run finished past it.
///
/// # Errors
/// [`RunError`] when Redis fails.
pub(super) async fn note_overrun(
    ctx: &Context,
    conn: &mut RedisConn,
    run: &Run,
) -> Result<(), RunError> {
    let (budgets, _) = standing(ctx, conn, run).await?;
    let over: Vec<Spent> = budgets.into_iter().filter(|b| b.used > b.allowed).collect();
    if over.is_empty() {
        return Ok(());
    }
    let detail = over.iter().map(Spent::detail).collect::<Vec<_>>().join("; ");
    for spent in &over {
        metrics::budget_overrun(spent.limit);
    }
    tracing::info!(message = "The run's turn went over a budget; it finished.", run_id = %run.id, user = %run.user, budget = %detail);
    let () = redis::cmd("HSET")
        .arg(ctx.keys.run(&run.id))
        .arg("budget_overrun")
        .arg(&detail)
        .query_async(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_month_so_far_runs_from_its_first_day() {
        use tally::month_so_far;
        let day = |text: &str| chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap();
        assert_eq!(month_so_far(day("2026-12-03")), ["2026-12-01", "2026-12-02", "2026-12-03"]);
        assert_eq!(month_so_far(day("2026-02-01")), ["2026-02-01"]);
        assert_eq!(month_so_far(day("2024-02-29")).len(), 29);
    }

    #[test]
    fn the_detail_names_the_limit_and_the_counts() {
        let spent = Spent { limit: "user_daily", allowed: 1000, used: 1200 };
        assert_eq!(spent.detail(), "user_daily: 1200 of 1000 tokens used");
    }
}
