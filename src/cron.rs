//! A validated cron expression, the leaf both `config` (which parses it) and `schedule` (which
//! fires it) share. Pure: this module must not know about time zones, ticks or users.

use std::fmt;

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::{Serialize, Serializer};

/// A validated cron expression.
///
/// Accepted forms: 6 fields `sec min hour day-of-month month day-of-week`, 7 fields with a
/// year, or the common 5 fields `min hour dom month dow`, which means second 0. When both
/// day-of-month and day-of-week are restricted, a day matching either fires, as in Vixie cron
/// (tokio-cron-scheduler alone would require both). Parsed by croner 3, the parser
/// tokio-cron-scheduler uses. The rule for the 5-field form: a 5-field expression gets a
/// leading `0` seconds field; 6 and 7 fields are taken as they are.
#[derive(Clone)]
pub struct CronExpr {
    source: String,
    cron: Cron,
}

/// Why a cron expression was rejected.
#[derive(Debug, thiserror::Error)]
#[error(
    "expected a cron expression of 5, 6 or 7 fields such as \"0 0 8 * * Mon-Fri\", found {source_text:?}: {reason}"
)]
pub struct CronError {
    source_text: String,
    reason: String,
}

impl CronExpr {
    /// Parses `text` in one of the accepted forms.
    ///
    /// # Errors
    /// [`CronError`] naming the expression and croner's reason.
    pub fn parse(text: &str) -> Result<Self, CronError> {
        let n_fields = text.split_whitespace().count();
        let normalized = match n_fields {
            5 => format!("0 {}", text.trim()),
            6 | 7 => text.trim().to_owned(),
            _ => {
                let reason = format!("it has {n_fields} fields");
                return Err(CronError { source_text: text.to_owned(), reason });
            }
        };
        let parser = CronParser::builder().seconds(Seconds::Required).dom_and_dow(false).build();
        let cron = parser.parse(&normalized).map_err(|error| CronError {
            source_text: text.to_owned(),
            reason: error.to_string(),
        })?;
        Ok(Self { source: text.trim().to_owned(), cron })
    }

    /// A valid placeholder, used only while collecting other configuration errors.
    pub(crate) fn fallback() -> Self {
        Self::parse("0 0 0 * * *").expect("the fallback cron expression is a valid constant")
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The first wall-clock time strictly after `after` that the expression matches, when one
    /// comes within `horizon`. `None` for a pattern that can never fire again, such as
    /// `0 0 30 2 *` (February 30th) or a year in the past.
    pub fn next_within(
        &self,
        after: chrono::NaiveDateTime,
        horizon: chrono::TimeDelta,
    ) -> Option<chrono::NaiveDateTime> {
        let next = self.cron.find_next_occurrence(&after.and_utc(), false).ok()?.naive_utc();
        (next - after <= horizon).then_some(next)
    }

    /// The parsed pattern.
    pub fn cron(&self) -> &Cron {
        &self.cron
    }
}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CronExpr").field(&self.source).finish()
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for CronExpr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, valid: bool) {
        assert_eq!(CronExpr::parse(text).is_ok(), valid, "{text:?}");
    }

    #[test]
    fn accepted_forms() {
        check("0 0 8 * * Mon-Fri", true);
        check("0 8 * * 1-5", true);
        check("*/10 * * * * *", true);
        check("0 0 8 * * * 2030", true);
        check("61 * * * * *", false);
        check("0 0 25 * * *", false);
        check("* * *", false);
        check("", false);
        check("banana", false);
    }

    fn check_fires(text: &str, fires: bool) {
        let expr = CronExpr::parse(text).unwrap();
        let after = chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap().and_hms_opt(0, 0, 0);
        let horizon = chrono::TimeDelta::days(5 * 366);
        let started = std::time::Instant::now();
        assert_eq!(expr.next_within(after.unwrap(), horizon).is_some(), fires, "{text:?}");
        assert!(started.elapsed().as_secs() < 2, "{text:?} took {:?}", started.elapsed());
    }

    #[test]
    fn patterns_that_never_fire() {
        check_fires("0 0 8 * * Mon-Fri", true);
        check_fires("0 0 29 2 *", true);
        check_fires("0 0 0 29 2 Mon", true);
        check_fires("0 0 0 1 1 * 2030", true);
        check_fires("0 0 30 2 *", false);
        check_fires("0 0 31 4 *", false);
        check_fires("0 0 0 1 1 * 2020", false);
        check_fires("0 0 0 1 1 * 2040", false);
    }

    #[test]
    fn five_fields_mean_second_zero() {
        let expr = CronExpr::parse("30 8 * * *").unwrap();
        let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap();
        let next = expr.cron().find_next_occurrence(&start, false).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-01-01T08:30:00+00:00");
    }
}
