//! When the daily cycle is due, computed here rather than by a cron library: the cycle runs at
//! a local time in the schools' time zone, which moves against UTC twice a year, and a cycle
//! missed while the daemon was down must still run. Pure functions of the clock they are given.

use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The daily cycle: a local time, its time zone, and the window the schools are spread over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Daily {
    pub at: NaiveTime,
    pub tz: Tz,
    /// Schools start at a fixed offset within this window after the cycle's time, so the LAS
    /// vendors are not hit by every school in one second.
    pub window: Duration,
}

impl Daily {
    /// The instant the cycle of local date `date` starts. On the spring-forward night a time
    /// inside the gap (02:30 in Amsterdam) starts when the clock jumps; on the autumn night a
    /// time that occurs twice starts at its first occurrence.
    pub fn slot(&self, date: NaiveDate) -> DateTime<Utc> {
        let mut local = date.and_time(self.at);
        // A gap is at most a few hours; step over it a minute at a time.
        for _ in 0..(6 * 60) {
            match self.tz.from_local_datetime(&local) {
                LocalResult::Single(t) => return t.with_timezone(&Utc),
                LocalResult::Ambiguous(first, _) => return first.with_timezone(&Utc),
                LocalResult::None => local += chrono::Duration::minutes(1),
            }
        }
        // Unreachable for real time zones; fall back to reading the time as UTC.
        local.and_utc()
    }

    /// The local date at `now`.
    pub fn today(&self, now: DateTime<Utc>) -> NaiveDate {
        now.with_timezone(&self.tz).date_naive()
    }

    /// The cycle that should have started by `now` and has not run yet, given the date of the
    /// last cycle that was started. Only the latest missed cycle is caught up: a daemon that
    /// was down for a week syncs once, not seven times.
    pub fn due(&self, now: DateTime<Utc>, last: Option<NaiveDate>) -> Option<NaiveDate> {
        let today = self.today(now);
        let latest = if now >= self.slot(today) {
            today
        } else {
            today.pred_opt()?
        };
        match last {
            Some(done) if done >= latest => None,
            _ => Some(latest),
        }
    }

    /// When the next cycle after `now` starts.
    pub fn next(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let today = self.today(now);
        let slot = self.slot(today);
        if slot > now {
            return slot;
        }
        today
            .succ_opt()
            .map(|d| self.slot(d))
            .unwrap_or(slot + chrono::Duration::days(1))
    }

    /// A school's fixed place in the window: the same every day, spread evenly over schools.
    pub fn offset(&self, school: &str) -> Duration {
        let window = self.window.as_secs();
        if window == 0 {
            return Duration::ZERO;
        }
        // FNV-1a: stable across releases and platforms (std's hasher is not).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in school.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Duration::from_secs(h % window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amsterdam(at: &str) -> Daily {
        Daily {
            at: NaiveTime::parse_from_str(at, "%H:%M").expect("time"),
            tz: chrono_tz::Europe::Amsterdam,
            window: Duration::from_secs(3600),
        }
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("instant")
            .with_timezone(&Utc)
    }

    #[test]
    fn the_slot_follows_local_time_across_both_dst_changes() {
        let d = amsterdam("03:30");
        // Winter: UTC+1. Summer: UTC+2.
        assert_eq!(d.slot(date(2026, 1, 15)), utc("2026-01-15T02:30:00Z"));
        assert_eq!(d.slot(date(2026, 7, 15)), utc("2026-07-15T01:30:00Z"));
        // Spring forward (29 March 2026, 02:00 -> 03:00): 03:30 exists, in summer time.
        assert_eq!(d.slot(date(2026, 3, 29)), utc("2026-03-29T01:30:00Z"));
        // Fall back (25 October 2026, 03:00 -> 02:00): 03:30 exists once, in winter time.
        assert_eq!(d.slot(date(2026, 10, 25)), utc("2026-10-25T02:30:00Z"));
        // The days around the changes are 23 and 25 hours apart.
        assert_eq!(
            d.slot(date(2026, 3, 29)) - d.slot(date(2026, 3, 28)),
            chrono::Duration::hours(23)
        );
        assert_eq!(
            d.slot(date(2026, 10, 25)) - d.slot(date(2026, 10, 24)),
            chrono::Duration::hours(25)
        );
    }

    #[test]
    fn a_time_in_the_gap_or_the_overlap_runs_once() {
        let gap = amsterdam("02:30");
        // 02:30 does not exist on 29 March: the cycle starts when the clock jumps to 03:00.
        assert_eq!(gap.slot(date(2026, 3, 29)), utc("2026-03-29T01:00:00Z"));
        // 02:30 happens twice on 25 October: the first time counts.
        assert_eq!(gap.slot(date(2026, 10, 25)), utc("2026-10-25T00:30:00Z"));
        // Either way there is exactly one cycle for that date.
        let now = utc("2026-10-25T01:45:00Z"); // the second 02:45 local
        assert_eq!(gap.due(now, Some(date(2026, 10, 25))), None);
    }

    #[test]
    fn a_missed_cycle_is_caught_up_once() {
        let d = amsterdam("03:30");
        // Started at 10:00 after being down since yesterday morning: today's cycle is due.
        let now = utc("2026-11-22T09:00:00Z");
        assert_eq!(
            d.due(now, Some(date(2026, 11, 20))),
            Some(date(2026, 11, 22))
        );
        // Started at 02:00, before today's slot, having missed yesterday's: yesterday's runs.
        let early = utc("2026-11-22T01:00:00Z");
        assert_eq!(
            d.due(early, Some(date(2026, 11, 20))),
            Some(date(2026, 11, 21))
        );
        // Nothing missed: nothing due until the slot.
        assert_eq!(d.due(early, Some(date(2026, 11, 21))), None);
        assert_eq!(d.due(now, Some(date(2026, 11, 22))), None);
        // A first start syncs right away.
        assert_eq!(d.due(now, None), Some(date(2026, 11, 22)));
    }

    #[test]
    fn next_is_always_in_the_future() {
        let d = amsterdam("03:30");
        let now = utc("2026-11-22T02:30:00Z"); // exactly the slot
        assert_eq!(d.next(now), utc("2026-11-23T02:30:00Z"));
        assert_eq!(
            d.next(utc("2026-11-22T02:29:59Z")),
            utc("2026-11-22T02:30:00Z")
        );
    }

    #[test]
    fn schools_are_spread_over_the_window_and_keep_their_place() {
        let d = amsterdam("03:30");
        let offsets: Vec<Duration> = (0..200).map(|n| d.offset(&format!("{n:02}AB00"))).collect();
        assert!(offsets.iter().all(|o| *o < Duration::from_secs(3600)));
        // A school keeps its place across releases and machines: the value is pinned, so a
        // change of the hash (which would move every school's slot) shows here.
        assert_eq!(d.offset("99XX00"), Duration::from_secs(3399));
        let first_half = offsets
            .iter()
            .filter(|o| **o < Duration::from_secs(1800))
            .count();
        assert!((60..140).contains(&first_half), "{first_half} of 200");
    }
}
