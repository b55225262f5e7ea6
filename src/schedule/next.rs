//! Fire times: when a schedule's cron expression fires in its time zone, including across
//! daylight-saving transitions, and each user's deterministic spread offset. Pure functions:
//! this module must not read the clock or talk to Redis.
//!
//! # The DST rule
//!
//! A cron expression matches *wall-clock* times in the schedule's zone, and every matching
//! wall-clock time fires exactly once:
//!
//! - a matching local time that does not exist (the spring-forward gap) fires once, at the first
//!   instant after the gap (New York 02:30 on the spring-forward day fires at 03:00 EDT); several
//!   matches inside one gap merge into that single firing;
//! - a matching local time that happens twice (the fall-back overlap) fires once, at its first
//!   occurrence (New York 01:30 fires at 01:30 EDT, not again at 01:30 EST). This holds for
//!   interval schedules too: `*/10 * * * * *` pauses during the repeated hour, as its wall-clock
//!   times already fired.
//!
//! croner 3 alone does something else: it treats fixed-time and interval patterns differently in
//! both cases, and from a start inside the repeated hour it can return an instant *before* the
//! start. So the wall-clock search uses croner on naive local times (expressed in UTC, which has
//! no transitions) and the mapping to instants is ours, in [`to_instant`].

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// Fire times searched per call before giving up: bounds the work for patterns that almost
/// never match, and for backward searches from inside a repeated hour.
const MAX_STEPS: usize = 100_000;
/// Longest daylight-saving shift in the time-zone database (two hours, "double summer time").
const MAX_SHIFT: Duration = Duration::hours(3);

/// Up to `n` instants, each `next` of the one before, starting after `after`.
pub(crate) fn successive(
    after: DateTime<Utc>,
    n: usize,
    next: impl Fn(DateTime<Utc>) -> Option<DateTime<Utc>>,
) -> Vec<DateTime<Utc>> {
    std::iter::successors(next(after), |&cursor| next(cursor)).take(n).collect()
}

/// The first fire time strictly after `after`, or `None` when there is none.
pub(crate) fn next_after(cron: &Cron, zone: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // Fire times are whole seconds; croner would carry the fraction of `after` into them.
    let mut local = whole_seconds(after).with_timezone(&zone).naive_local();
    for _ in 0..MAX_STEPS {
        let matched = cron.find_next_occurrence(&local.and_utc(), false).ok()?.naive_utc();
        let instant = to_instant(zone, matched)?;
        // From inside a repeated hour, a later wall-clock time can map to an earlier instant
        // (its first occurrence): that time already fired, so keep searching.
        if instant > after {
            return Some(instant);
        }
        local = matched;
    }
    None
}

/// The latest fire time in `(from, to]`, for catch-up; `None` when none falls in it.
pub(crate) fn latest_in(
    cron: &Cron,
    zone: Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let to_local = whole_seconds(to).with_timezone(&zone).naive_local();
    // Inside a repeated hour, later wall-clock times map to earlier instants (their first
    // occurrence), so the backward search starts past the repeated hour.
    let repeated = matches!(zone.from_local_datetime(&to_local), LocalResult::Ambiguous(..));
    let mut local = if repeated { to_local + MAX_SHIFT } else { to_local };
    let mut inclusive = true;
    for _ in 0..MAX_STEPS {
        let matched = cron.find_previous_occurrence(&local.and_utc(), inclusive).ok()?.naive_utc();
        let instant = to_instant(zone, matched)?;
        if instant <= to {
            return (instant > from).then_some(instant);
        }
        local = matched;
        inclusive = false;
    }
    None
}

/// `time` without its fraction of a second (rounded down).
fn whole_seconds(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(time.timestamp(), 0).unwrap_or(time)
}

/// The instant at which the wall-clock time `local` fires: itself when it exists once, its
/// first occurrence when it is repeated, the first instant after the gap when it is skipped.
pub(crate) fn to_instant(zone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(time) => Some(time.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        LocalResult::None => after_gap(zone, local),
    }
}

/// The first instant after the gap that contains `local`: the first wall-clock second after
/// `local` that exists. Found by minutes, then refined by seconds, because zones shift on whole
/// minutes today but the database holds older odd offsets.
fn after_gap(zone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let exists = |time: NaiveDateTime| zone.from_local_datetime(&time).earliest();
    let mut probe = local;
    for _ in 0..(MAX_SHIFT.num_minutes()) {
        let next = probe + Duration::minutes(1);
        if exists(next).is_some() {
            let mut second = probe;
            while second < next {
                second += Duration::seconds(1);
                if let Some(time) = exists(second) {
                    return Some(time.with_timezone(&Utc));
                }
            }
        }
        probe = next;
    }
    None
}

/// The deterministic start offset of `user` within `window`: SHA-256 of the schedule name and
/// the user, modulo the window in milliseconds. Stable across processes and releases (unlike
/// `DefaultHasher`), so every scheduler replica computes the same `not_before` for a run.
pub fn spread_offset(
    schedule: &str,
    user: &str,
    window: std::time::Duration,
) -> std::time::Duration {
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    if window_ms == 0 {
        return std::time::Duration::ZERO;
    }
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(schedule.as_bytes());
    // A separator byte that neither part can contain keeps ("ab", "c") apart from ("a", "bc").
    context.update(&[0]);
    context.update(user.as_bytes());
    let digest = context.finish();
    let mut head = [0_u8; 8];
    head.copy_from_slice(&digest.as_ref()[..8]);
    std::time::Duration::from_millis(u64::from_be_bytes(head) % window_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScheduleConfig;

    /// The next `n` fire times of `schedule` strictly after `after`, in its one zone.
    fn next_fires(schedule: &ScheduleConfig, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        successive(after, n, |cursor| next_after(schedule.cron.cron(), schedule.timezone, cursor))
    }

    fn schedule(cron: &str, zone: &str) -> ScheduleConfig {
        ScheduleConfig {
            name: "s".to_owned(),
            cron: crate::cron::CronExpr::parse(cron).unwrap(),
            timezone: zone.parse().unwrap(),
            per_user_zone: false,
            skip_dates: Vec::new(),
            users: Vec::new(),
            prompt: String::new(),
            overlap: crate::config::Overlap::Skip,
            spread: None,
            catch_up: None,
            enabled: true,
            budget_daily_tokens: None,
            budget_monthly_tokens: None,
        }
    }

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    /// The fire times after `after` are exactly `expect` (RFC 3339 with the local offset).
    fn check(cron: &str, zone: &str, after: &str, expect: &[&str]) {
        let got = next_fires(&schedule(cron, zone), time(after), expect.len());
        let expect: Vec<_> = expect.iter().map(|text| time(text)).collect();
        assert_eq!(got, expect, "{cron:?} in {zone} after {after}");
    }

    fn check_latest(cron: &str, zone: &str, window: (&str, &str), expect: Option<&str>) {
        let schedule = schedule(cron, zone);
        let got =
            latest_in(schedule.cron.cron(), schedule.timezone, time(window.0), time(window.1));
        assert_eq!(got, expect.map(time), "{cron:?} in {zone} within {window:?}");
    }

    #[test]
    fn plain_days_and_five_field_form() {
        let ny = "America/New_York";
        check(
            "0 8 * * Mon-Fri",
            ny,
            "2026-01-09T09:00:00-05:00",
            &["2026-01-12T08:00:00-05:00", "2026-01-13T08:00:00-05:00"],
        );
        check("0 0 8 * * Mon-Fri", ny, "2026-01-12T08:00:00-05:00", &["2026-01-13T08:00:00-05:00"]);
        check(
            "* * * * * *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z"],
        );
        // Vixie OR: the 1st of the month, or any Monday.
        check(
            "0 0 9 1 * Mon",
            "UTC",
            "2026-06-01T10:00:00Z",
            &["2026-06-08T09:00:00Z", "2026-06-15T09:00:00Z"],
        );
        check("0 0 0 1 1 * 2020", "UTC", "2026-01-01T00:00:00Z", &[]);
        // A fraction of a second in the start never leaks into fire times.
        check("0 0 8 * * *", "UTC", "2026-01-01T07:59:59.5Z", &["2026-01-01T08:00:00Z"]);
        check("0 0 8 * * *", "UTC", "2026-01-01T08:00:00.5Z", &["2026-01-02T08:00:00Z"]);
    }

    #[test]
    fn new_york_spring_forward_fires_skipped_times_once_after_the_gap() {
        let ny = "America/New_York";
        check(
            "0 30 2 * * *",
            ny,
            "2026-03-07T12:00:00-05:00",
            &["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
        );
        check("30 2 * * *", ny, "2026-03-07T12:00:00-05:00", &["2026-03-08T03:00:00-04:00"]);
        check(
            "0 */15 * * * *",
            ny,
            "2026-03-08T01:40:00-05:00",
            &[
                "2026-03-08T01:45:00-05:00",
                "2026-03-08T03:00:00-04:00",
                "2026-03-08T03:15:00-04:00",
            ],
        );
        // Weekday 08:00 keeps its wall-clock time after the change (the FixedOffset drift of
        // tokio-cron-scheduler #87/#107 would fire at 09:00 EDT).
        check("0 0 8 * * Mon-Fri", ny, "2026-03-06T09:00:00-05:00", &["2026-03-09T08:00:00-04:00"]);
    }

    #[test]
    fn new_york_fall_back_fires_repeated_times_once_at_the_first() {
        let ny = "America/New_York";
        check(
            "0 30 1 * * *",
            ny,
            "2026-10-31T12:00:00-04:00",
            &["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
        );
        // From inside the second 01:00 hour: 01:30 already fired at 01:30 EDT.
        check("0 30 1 * * *", ny, "2026-11-01T01:10:00-05:00", &["2026-11-02T01:30:00-05:00"]);
        check(
            "0 */30 * * * *",
            ny,
            "2026-11-01T00:45:00-04:00",
            &[
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:30:00-04:00",
                "2026-11-01T02:00:00-05:00",
            ],
        );
        check(
            "0 0 * * * *",
            ny,
            "2026-11-01T00:30:00-04:00",
            &["2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00"],
        );
    }

    #[test]
    fn berlin_both_transitions() {
        let berlin = "Europe/Berlin";
        check(
            "0 30 2 * * *",
            berlin,
            "2026-03-28T12:00:00+01:00",
            &["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
        );
        check(
            "0 30 2 * * *",
            berlin,
            "2026-10-24T12:00:00+02:00",
            &["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
        );
        check("30 17 * * 1-5", berlin, "2026-03-27T18:00:00+01:00", &["2026-03-30T17:30:00+02:00"]);
        check("30 17 * * 1-5", berlin, "2026-10-23T18:00:00+02:00", &["2026-10-26T17:30:00+01:00"]);
    }

    #[test]
    fn lord_howe_thirty_minute_shift() {
        let lord_howe = "Australia/Lord_Howe";
        check(
            "0 15 2 * * *",
            lord_howe,
            "2026-10-03T12:00:00+10:30",
            &["2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"],
        );
        check(
            "0 */10 * * * *",
            lord_howe,
            "2026-10-04T01:55:00+10:30",
            &["2026-10-04T02:30:00+11:00", "2026-10-04T02:40:00+11:00"],
        );
        check(
            "0 45 1 * * *",
            lord_howe,
            "2026-04-04T12:00:00+11:00",
            &["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"],
        );
        check(
            "0 45 1 * * *",
            lord_howe,
            "2026-04-05T01:35:00+10:30",
            &["2026-04-06T01:45:00+10:30"],
        );
    }

    #[test]
    fn every_wall_clock_minute_fires_once_and_in_order_across_transitions() {
        let cases = [
            ("America/New_York", "2026-03-08T00:00:00-05:00"),
            ("America/New_York", "2026-11-01T00:00:00-04:00"),
            ("Europe/Berlin", "2026-10-25T00:00:00+02:00"),
            ("Australia/Lord_Howe", "2026-04-05T00:00:00+11:00"),
            ("Australia/Lord_Howe", "2026-10-04T00:00:00+10:30"),
        ];
        for (zone, start) in cases {
            let schedule = schedule("0 * * * * *", zone);
            let fires = next_fires(&schedule, time(start), 6 * 60);
            let mut locals = std::collections::HashSet::new();
            for pair in fires.windows(2) {
                assert!(pair[0] < pair[1], "{zone}: {pair:?} out of order");
            }
            for fire in &fires {
                let local = fire.with_timezone(&schedule.timezone).naive_local();
                assert!(locals.insert(local), "{zone}: {local} fired twice");
            }
        }
    }

    #[test]
    fn latest_fire_in_a_window_for_catch_up() {
        let ny = "America/New_York";
        let window = ("2026-01-05T07:30:00-05:00", "2026-01-05T08:30:00-05:00");
        check_latest("0 0 8 * * *", ny, window, Some("2026-01-05T08:00:00-05:00"));
        let window = ("2026-01-05T08:00:00-05:00", "2026-01-05T08:30:00-05:00");
        check_latest("0 0 8 * * *", ny, window, None);
        let window = ("2026-01-05T07:00:00-05:00", "2026-01-05T08:00:00-05:00");
        check_latest("0 0 8 * * *", ny, window, Some("2026-01-05T08:00:00-05:00"));
        let window = ("2026-11-01T00:10:00-04:00", "2026-11-01T01:10:00-05:00");
        check_latest("0 30 1 * * *", ny, window, Some("2026-11-01T01:30:00-04:00"));
        let window = ("2026-03-08T01:05:00-05:00", "2026-03-08T03:05:00-04:00");
        check_latest("0 30 2 * * *", ny, window, Some("2026-03-08T03:00:00-04:00"));
        let window = ("2026-01-05T08:00:00Z", "2026-01-05T08:00:10Z");
        check_latest("* * * * * *", "UTC", window, Some("2026-01-05T08:00:10Z"));
    }

    #[test]
    fn spread_offsets_are_deterministic_and_within_the_window() {
        let window = std::time::Duration::from_secs(600);
        let offsets: Vec<_> =
            (0..1000).map(|i| spread_offset("morning", &format!("user{i}@x"), window)).collect();
        let again: Vec<_> =
            (0..1000).map(|i| spread_offset("morning", &format!("user{i}@x"), window)).collect();
        assert_eq!(offsets, again);
        assert!(offsets.iter().all(|offset| *offset < window));
        // Spread over the window, not bunched: each tenth of it holds some users.
        for tenth in 0..10_u32 {
            let range = (window * tenth / 10)..(window * (tenth + 1) / 10);
            assert!(offsets.iter().any(|offset| range.contains(offset)), "tenth {tenth} empty");
        }
        // Pinned values: a change of hash would move every user's start time.
        // Computed independently: sha256(b"morning\0alice@example.com")[..8] as a big-endian
        // u64, modulo 600,000 ms.
        let pinned = spread_offset("morning", "alice@example.com", window);
        assert_eq!(pinned, std::time::Duration::from_millis(470_712));
        assert_ne!(pinned, spread_offset("evening", "alice@example.com", window));
        assert_eq!(spread_offset("a", "b", std::time::Duration::ZERO), std::time::Duration::ZERO);
    }
}
