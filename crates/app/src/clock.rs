//! Time, behind a trait so tests can hold it still or move it forward (token expiry,
//! birth dates in the future).

use std::fmt;

use time::{Date, OffsetDateTime};

pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> OffsetDateTime;

    fn now_ms(&self) -> i64 {
        let nanos = self.now().unix_timestamp_nanos();
        i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
    }

    fn today(&self) -> Date {
        self.now().date()
    }
}

/// The real clock, in UTC.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}
