//! A moment of a roster record, stored as whole microseconds since 1970 (UTC) in a `bigint`.
//!
//! SQLite kept a `DateTime` as 32 characters of text ("2026-12-02T03:47:33.786338+00:00");
//! as an integer it takes 8 bytes, in the row and again in every index on it. The persons,
//! memberships and journal hold several per pupil: as integers the store took 196 bytes a
//! pupil less, a sixth of it (issue 17).
//! PostgreSQL's `timestamptz` was 8 bytes already; it gets `bigint` too so that both backends
//! run the same SQL, and the API's SQL compares moments of several tables with each other.
//! Integers also compare by value on SQLite, where text compared by its characters and a
//! moment written with fewer fractional digits sorted wrongly against one with more.
//!
//! Everything outside the store sees a `DateTime<Utc>` (`Stamp::at`): what is shown or
//! serialized is a date and time as before.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::DeriveValueType;

/// Microseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, DeriveValueType)]
pub struct Stamp(pub i64);

impl Stamp {
    /// The moment as a date and time. Values outside chrono's range (never written by
    /// rostersync) saturate rather than fail a read.
    pub fn at(self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.0).unwrap_or(if self.0 < 0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
    }

    /// The store's clock (`store::now`) as a stamp.
    pub fn now() -> Self {
        super::now().into()
    }
}

impl std::ops::Add<TimeDelta> for Stamp {
    type Output = Stamp;

    fn add(self, d: TimeDelta) -> Stamp {
        Stamp(
            self.0
                .saturating_add(d.num_microseconds().unwrap_or(i64::MAX)),
        )
    }
}

impl From<DateTime<Utc>> for Stamp {
    /// Below a microsecond is cut, as PostgreSQL's `timestamptz` did.
    fn from(t: DateTime<Utc>) -> Self {
        Stamp(t.timestamp_micros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moment(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("a moment")
            .with_timezone(&Utc)
    }

    #[test]
    fn a_moment_goes_to_microseconds_and_back() {
        let t = moment("2026-12-02T03:47:33.786338+00:00");
        let s = Stamp::from(t);
        assert_eq!(s.0, 1_796_183_253_786_338);
        assert_eq!(s.at(), t);
    }

    #[test]
    fn below_a_microsecond_is_cut() {
        let t = moment("2026-12-02T03:47:33.000000999Z");
        assert_eq!(Stamp::from(t).0 % 1_000_000, 0);
    }

    #[test]
    fn a_duration_adds_as_to_the_date_time() {
        let t = moment("2026-12-02T03:47:33.786338Z");
        let d = TimeDelta::days(30) + TimeDelta::microseconds(5);
        assert_eq!((Stamp::from(t) + d).at(), t + d);
        assert_eq!(Stamp(i64::MAX - 1) + d, Stamp(i64::MAX));
    }

    #[test]
    fn order_is_time_order() {
        assert!(Stamp(1) < Stamp(2));
        assert!(Stamp(-1).at() < Stamp(0).at());
    }
}
