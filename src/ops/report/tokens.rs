//! Token usage over days (`agentcron usage`): the per-day hashes `<p>:tokens:<YYYY-MM-DD>`
//! read from a first day to today and summed by user, by schedule or by day. Reads only.

use std::collections::BTreeMap;

use crate::config::RedisConn;
use chrono::{NaiveDate, TimeDelta};
use serde::Serialize;

use crate::keys::Keys;
use crate::records::RecordsError;

/// Days read at most, whatever `--since` says (the hashes expire before that anyway).
const MAX_DAYS: i64 = 3_660;

/// How `agentcron usage` groups the days' figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageBy {
    /// By user.
    User,
    /// By schedule (`adhoc` for runs of none).
    Schedule,
    /// By day (UTC).
    Day,
}

/// The usage of one user, schedule or day.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageRow {
    /// The user, schedule or day.
    pub key: String,
    /// Runs counted.
    pub runs: u64,
    /// Input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Tokens written to the prompt cache.
    pub cache_write: u64,
    /// Tokens read from the prompt cache.
    pub cache_read: u64,
    /// The estimated cost, USD.
    pub cost_usd: f64,
}

impl UsageRow {
    /// Every token, whatever its kind.
    pub fn tokens(&self) -> u64 {
        self.input + self.output + self.cache_write + self.cache_read
    }

    fn add(&mut self, kind: &str, value: u64) {
        match kind {
            "runs" => self.runs += value,
            "input" => self.input += value,
            "output" => self.output += value,
            "cache_write" => self.cache_write += value,
            "cache_read" => self.cache_read += value,
            #[allow(clippy::cast_precision_loss)] // Micro-dollars stay far below 2^52.
            "cost_micro_usd" => self.cost_usd += value as f64 / 1_000_000.0,
            _ => {}
        }
    }
}

/// The tokens and estimated cost of every run today and this month (UTC), for `status` and
/// the dashboard's front page.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Spend {
    /// Today (`key` is the day).
    pub today: UsageRow,
    /// This month so far (`key` is the month, `YYYY-MM`).
    pub month: UsageRow,
}

/// [`Spend`] as of `today`, in one pipeline over the month's days.
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub(super) async fn spend(
    conn: &mut RedisConn,
    keys: &Keys,
    today: NaiveDate,
) -> Result<Spend, RecordsError> {
    const KINDS: [&str; 6] =
        ["runs", "input", "output", "cache_write", "cache_read", "cost_micro_usd"];
    let days = crate::records::tally::month_so_far(today);
    let mut pipe = redis::pipe();
    for day in &days {
        let cmd = pipe.cmd("HMGET").arg(keys.tokens_day(day));
        for kind in KINDS {
            cmd.arg(format!("total:{kind}"));
        }
    }
    let replies: Vec<Vec<Option<u64>>> = pipe.query_async(conn).await?;
    let mut spend = Spend {
        today: UsageRow { key: days.last().cloned().unwrap_or_default(), ..UsageRow::default() },
        month: UsageRow { key: today.format("%Y-%m").to_string(), ..UsageRow::default() },
    };
    let n_days = replies.len();
    for (i, counts) in replies.into_iter().enumerate() {
        for (kind, value) in KINDS.iter().zip(counts) {
            let value = value.unwrap_or(0);
            spend.month.add(kind, value);
            if i + 1 == n_days {
                spend.today.add(kind, value);
            }
        }
    }
    Ok(spend)
}

/// The usage from `first` to `last` (UTC days, both included), grouped `by`, at most `top`
/// rows: most tokens first, or for days the newest first.
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub async fn usage(
    conn: &mut RedisConn,
    keys: &Keys,
    (first, last): (NaiveDate, NaiveDate),
    by: UsageBy,
    top: usize,
) -> Result<Vec<UsageRow>, RecordsError> {
    let first = first.max(last - TimeDelta::days(MAX_DAYS));
    let mut rows: BTreeMap<String, UsageRow> = BTreeMap::new();
    let mut day = first;
    while day <= last {
        let name = day.format("%Y-%m-%d").to_string();
        let fields: BTreeMap<String, u64> =
            redis::cmd("HGETALL").arg(keys.tokens_day(&name)).query_async(conn).await?;
        for (field, value) in fields {
            let Some((group, kind)) = field.rsplit_once(':') else { continue };
            let key = match (by, group.split_once(':')) {
                (UsageBy::User, Some(("user", user))) => user.to_owned(),
                (UsageBy::Schedule, Some(("schedule", schedule))) => schedule.to_owned(),
                (UsageBy::Day, None) if group == "total" => name.clone(),
                _ => continue,
            };
            let row =
                rows.entry(key.clone()).or_insert_with(|| UsageRow { key, ..UsageRow::default() });
            row.add(kind, value);
        }
        day += TimeDelta::days(1);
    }
    let mut rows: Vec<UsageRow> = rows.into_values().collect();
    if by == UsageBy::Day {
        rows.reverse();
    } else {
        rows.sort_by(|a, b| b.tokens().cmp(&a.tokens()).then_with(|| a.key.cmp(&b.key)));
    }
    rows.truncate(top);
    Ok(rows)
}
