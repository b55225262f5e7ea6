//! Which zones a schedule fires in, and when: one zone, or with `timezone = "user"` every
//! zone a user may live in, each by the DST rule of `next.rs`. Pure, like `next.rs`.
//!
//! A per-user-zone schedule is woken at every instant its cron matches in *some* zone of the
//! time-zone database, not only in the zones its users had at the last look: a user's zone is
//! read from Redis at each tick (`redis-cli HSET` may change it any time), so the scheduler
//! never needs to be told. The instants are few (a daily cron matches at about 40 distinct
//! instants a day across every zone), and at each the fan-out takes only the users whose zone
//! fires then, deciding once per zone rather than once per user.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::next::{latest_in, next_after, successive};
use crate::config::ScheduleConfig;
use crate::users::Profile;

/// The zones `schedule` fires in: its own, or every zone of the database.
fn zones(schedule: &ScheduleConfig) -> &[Tz] {
    if schedule.per_user_zone {
        &chrono_tz::TZ_VARIANTS
    } else {
        std::slice::from_ref(&schedule.timezone)
    }
}

/// The first instant strictly after `after` at which `schedule` fires in any of its zones.
pub fn next_tick(schedule: &ScheduleConfig, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    zones(schedule).iter().filter_map(|&zone| next_after(schedule.cron.cron(), zone, after)).min()
}

/// The next `n` ticks of `schedule` strictly after `after`.
pub fn next_ticks(schedule: &ScheduleConfig, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    successive(after, n, |cursor| next_tick(schedule, cursor))
}

/// For catch-up: the latest tick in `(from, to]` of each zone, each instant once.
pub(crate) fn latest_ticks(
    schedule: &ScheduleConfig,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> BTreeSet<DateTime<Utc>> {
    zones(schedule)
        .iter()
        .filter_map(|&zone| latest_in(schedule.cron.cron(), zone, from, to))
        .collect()
}

/// The fire times of `schedule` for a user in `zone`, strictly after `after`, in order.
pub(super) fn fires_in_zone(
    schedule: &ScheduleConfig,
    zone: Tz,
    after: DateTime<Utc>,
) -> impl Iterator<Item = DateTime<Utc>> + '_ {
    let next = move |cursor| next_after(schedule.cron.cron(), zone, cursor);
    std::iter::successors(next(after), move |&cursor| next(cursor))
}

/// The zone a user's runs of `schedule` use: the schedule's, or with `timezone = "user"` the
/// user's (else the default); `None` when the user's zone is set but cannot be read.
pub(super) fn zone_for(schedule: &ScheduleConfig, profile: &Profile) -> Option<Tz> {
    if schedule.per_user_zone {
        profile.zone_or(schedule.timezone)
    } else {
        Some(schedule.timezone)
    }
}

/// Whether `fire`, in `zone`, falls on one of the schedule's `skip_dates`.
pub(super) fn on_skip_date(schedule: &ScheduleConfig, zone: Tz, fire: DateTime<Utc>) -> bool {
    schedule.skip_dates.binary_search(&fire.with_timezone(&zone).date_naive()).is_ok()
}

/// What a tick means in one zone, decided once per zone and kept for every user in it.
#[derive(Debug)]
pub(crate) struct TickZones<'a> {
    schedule: &'a ScheduleConfig,
    tick: DateTime<Utc>,
    seen: HashMap<Tz, InZone>,
}

/// The tick in one zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InZone {
    /// The schedule does not fire at the tick in this zone.
    NotDue,
    /// It fires, but the local date is one of `skip_dates`.
    SkipDate,
    /// It fires.
    Due,
}

impl<'a> TickZones<'a> {
    pub(crate) fn new(schedule: &'a ScheduleConfig, tick: DateTime<Utc>) -> Self {
        Self { schedule, tick, seen: HashMap::new() }
    }

    /// What the tick is in `zone`. A schedule with one zone fires at every tick it is given
    /// (the daemon, or a catch-up, chose it), as before zones per user.
    pub(crate) fn in_zone(&mut self, zone: Tz) -> InZone {
        let (schedule, tick) = (self.schedule, self.tick);
        *self.seen.entry(zone).or_insert_with(|| {
            let due = !schedule.per_user_zone
                || next_after(schedule.cron.cron(), zone, tick - Duration::seconds(1))
                    == Some(tick);
            match (due, on_skip_date(schedule, zone, tick)) {
                (false, _) => InZone::NotDue,
                (true, true) => InZone::SkipDate,
                (true, false) => InZone::Due,
            }
        })
    }
}
