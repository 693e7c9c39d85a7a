//! Unix time and the calendar: one conversion from `SystemTime`, one
//! civil-date algorithm (Howard Hinnant's, proleptic Gregorian) for the
//! baseline's dates, the status page, `check` and certificates.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A point of the monotonic clock in four bytes: tenths of a second since
/// the process first asked (13 years of range), for what is kept per port
/// (an `Instant` is 16 bytes, times thousands of ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tick(u32);

fn clock_epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Tick {
    /// The first tick: before anything.
    pub const START: Tick = Tick(0);

    /// The tick at or just after `t` (rounded up: a "not before" stays one).
    pub fn at(t: Instant) -> Tick {
        let d = t.saturating_duration_since(clock_epoch());
        // Rounded up from the nanosecond: whole milliseconds would put an
        // instant 0.4 ms past a tenth on that tenth, before it.
        let tenths = d.as_nanos().div_ceil(100_000_000);
        Tick(u32::try_from(tenths).unwrap_or(u32::MAX))
    }

    pub fn instant(self) -> Instant {
        clock_epoch() + Duration::from_millis(u64::from(self.0) * 100)
    }
}

/// Time from the epoch to `t` (zero before it): the one conversion.
pub fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// `t` in seconds since the epoch (0 before it).
pub fn unix_seconds(t: SystemTime) -> f64 {
    since_epoch(t).as_secs_f64()
}

/// `t` in whole seconds since the epoch (0 before it).
pub fn unix_secs(t: SystemTime) -> u64 {
    since_epoch(t).as_secs()
}

/// Whole seconds since the epoch, now.
pub fn now() -> u64 {
    unix_secs(SystemTime::now())
}

/// The instant `secs` seconds after the epoch.
pub fn from_unix_secs(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month, day) of a day counted from 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `YYYY-MM-DD HH:MM:SS UTC` for seconds since the epoch.
pub fn utc(secs: u64) -> String {
    format!("{} {} UTC", date(secs as i64), clock(secs))
}

/// `2026-12-04T13:05:09.123Z`: RFC 3339 in UTC, to the millisecond.
pub fn rfc3339(at: SystemTime) -> String {
    let since = since_epoch(at);
    let secs = since.as_secs();
    format!(
        "{}T{}.{:03}Z",
        date(secs as i64),
        clock(secs),
        since.subsec_millis()
    )
}

/// `HH:MM:SS` of the day, in UTC.
fn clock(secs: u64) -> String {
    let rem = secs % 86_400;
    format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `YYYY-MM-DD` of seconds since the epoch (before it: 1970-01-01).
pub fn date(secs: i64) -> String {
    let (year, month, day) = civil_from_days(secs.max(0).div_euclid(86_400));
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_is_never_before_its_instant_and_at_most_a_tenth_after() {
        // The clock's epoch first: an instant before it is the epoch's
        // tick, however long before (a loaded test run took the instant
        // more than a tenth before the first tick).
        let _ = Tick::START.instant();
        let now = Instant::now();
        for ms in [0u64, 1, 99, 100, 101, 12_345, 86_400_000] {
            let t = now + Duration::from_millis(ms);
            let back = Tick::at(t).instant();
            assert!(back >= t && back - t < Duration::from_millis(100), "{ms}");
        }
        assert!(Tick::at(now) <= Tick::at(now + Duration::from_millis(150)));
    }

    #[test]
    fn calendar_round_trips() {
        for days in [-1_000_000, -1, 0, 1, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
    }

    #[test]
    fn dates_read_as_calendar_days() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_825_600), "2000-02-29");
        assert_eq!(date(1_796_029_200), "2026-11-30");
        assert_eq!(utc(1_796_029_200 + 3_723), "2026-11-30 10:02:03 UTC");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    }

    #[test]
    fn before_the_epoch_is_zero() {
        let before = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(unix_secs(before), 0);
        assert_eq!(unix_seconds(before), 0.0);
        assert_eq!(unix_secs(from_unix_secs(42)), 42);
    }
}
