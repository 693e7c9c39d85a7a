//! A port's last day, for the status page: one bucket a minute holding the
//! worst health seen in it and the median connect time of its checks — kept
//! run-length encoded, so that a port that was fine all day costs a few
//! bytes, and bounded, so that one that flapped all day costs at most
//! [`MAX_RUNS`] runs. Lost on restart: Prometheus is the long-term store.
//!
//! A run holds minutes in a row with the same worst health whose medians
//! stay within a factor of two of the run's first: loopback connect times
//! wander by tens of microseconds, and a bar of one colour a day should not
//! cost a run a minute. Past [`MAX_RUNS`], the two oldest runs are merged
//! (the worse health, the first's time): the far end of the bar coarsens,
//! the recent end stays exact.

use std::sync::Arc;
use std::time::SystemTime;

use smallvec::SmallVec;

use crate::health::{Health, class_seconds, time_class};

/// Minutes kept: a day.
pub const MINUTES: u32 = 24 * 60;
/// The most runs a port keeps (each [`std::mem::size_of::<Run>()`] bytes).
pub const MAX_RUNS: usize = 120;
/// Connect times a minute keeps for its median (the last ones).
const SAMPLES: usize = 8;

/// The minute `at` falls in, counted from the epoch.
pub fn minute_of(at: SystemTime) -> u32 {
    unix_seconds(at) / 60
}

/// `at` in whole seconds since the epoch (a u32 lasts until 2106).
pub fn unix_seconds(at: SystemTime) -> u32 {
    u32::try_from(crate::value::time::unix_secs(at)).unwrap_or(u32::MAX)
}

/// Minutes in a row alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Run {
    /// Its first minute (minutes since the epoch).
    start: u32,
    len: u16,
    /// [`Health::weight`] of the worst health.
    worst: u8,
    /// Median connect time as a class: microseconds ≈ 2^(class/8); 0 for
    /// none (no successful connect in it).
    class: u8,
}

/// Minutes in a row with one worst health and about one connect time, as
/// the API and the page draw them; minutes without data are not spans.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// Its first minute (minutes since the epoch).
    pub start: u32,
    pub minutes: u32,
    pub worst: Health,
    /// Median connect time of its first minute, seconds.
    pub connect_seconds: Option<f64>,
}

/// Closed minutes, oldest first: a steady port's few runs live in the
/// same allocation as their count.
type Runs = SmallVec<[Run; 2]>;

/// The minute being filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Minute {
    minute: u32,
    worst: u8,
    /// Connect times of its last [`SAMPLES`] successful checks, as
    /// classes (a class is as precise as a bucket keeps it anyway).
    times: [u8; SAMPLES],
    seen: u8,
}

impl Minute {
    fn class(&self) -> u8 {
        let n = usize::from(self.seen).min(SAMPLES);
        if n == 0 {
            return 0;
        }
        let mut sorted = self.times;
        let sorted = &mut sorted[..n];
        sorted.sort_unstable();
        sorted[n / 2]
    }
}

/// A port's (or a target's) last day. Cheap to clone: the closed minutes
/// are shared with the snapshots and copied only when a minute closes
/// while a snapshot still holds them (once a minute at most).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    runs: Arc<Runs>,
    current: Option<Minute>,
    /// Minutes a verdict holds until the next check: checked every 5
    /// minutes, a port is known in the minutes between.
    carry: u8,
}

impl History {
    /// A history whose verdicts hold for `minutes` minutes without a new
    /// check (the checks' interval, rounded up; a minute more for jitter).
    pub fn carrying(minutes: u8) -> History {
        History {
            carry: minutes,
            ..History::default()
        }
    }

    /// The minutes a verdict holds when checks come every `every`.
    pub fn carry_for(every: std::time::Duration) -> u8 {
        u8::try_from(every.as_secs().div_ceil(60) + 1).unwrap_or(u8::MAX)
    }

    /// Records a check at `minute`: its health, and its connect time when
    /// it connected. Minutes only move forward; a late one joins the
    /// current minute.
    pub fn record(&mut self, minute: u32, health: Health, connect_seconds: Option<f64>) {
        let current = match &mut self.current {
            Some(m) if minute <= m.minute => {
                m.worst = m.worst.max(health.weight());
                m
            }
            _ => {
                let gap = self
                    .current
                    .map_or(0, |m| minute.saturating_sub(m.minute + 1));
                self.close();
                // The last verdict holds until the next check is due, and
                // no longer: past that the bar is grey.
                let held = gap.min(u32::from(self.carry.saturating_sub(1)));
                if held > 0 {
                    let runs = Arc::make_mut(&mut self.runs);
                    if let Some(r) = runs.last_mut() {
                        r.len = r.len.saturating_add(held as u16);
                    }
                }
                self.trim(minute);
                self.current.insert(Minute {
                    minute,
                    worst: health.weight(),
                    times: [0; SAMPLES],
                    seen: 0,
                })
            }
        };
        if let Some(seconds) = connect_seconds {
            current.times[usize::from(current.seen) % SAMPLES] = time_class(seconds);
            current.seen = current.seen.saturating_add(1);
            if usize::from(current.seen) == 2 * SAMPLES {
                // Keeps the index cycling without overflow.
                current.seen = SAMPLES as u8;
            }
        }
    }

    /// Ends the current minute: into the runs.
    fn close(&mut self) {
        let Some(m) = self.current.take() else {
            return;
        };
        let (minute, worst, class) = (m.minute, m.worst, m.class());
        let runs = Arc::make_mut(&mut self.runs);
        let joins = runs.last().is_some_and(|r| {
            r.start + u32::from(r.len) == minute
                && r.worst == worst
                && r.len < u16::MAX
                && (r.class == class || (r.class > 0 && class > 0 && r.class.abs_diff(class) <= 8))
        });
        match runs.last_mut() {
            Some(r) if joins => r.len += 1,
            _ => runs.push(Run {
                start: minute,
                len: 1,
                worst,
                class,
            }),
        }
        if runs.len() > MAX_RUNS {
            // The two oldest become one: the far end coarsens.
            let (a, b) = (runs[0], runs[1]);
            let end = b.start + u32::from(b.len);
            runs[1] = Run {
                start: a.start,
                len: (end - a.start).min(u32::from(u16::MAX)) as u16,
                worst: a.worst.max(b.worst),
                class: if a.class > 0 { a.class } else { b.class },
            };
            runs.remove(0);
        }
    }

    /// Drops what is older than a day before `now` (minutes since the
    /// epoch).
    fn trim(&mut self, now: u32) {
        let oldest = now.saturating_sub(MINUTES - 1);
        if self.runs.first().is_none_or(|r| r.start >= oldest) {
            return;
        }
        let runs = Arc::make_mut(&mut self.runs);
        let gone = runs
            .iter()
            .take_while(|r| r.start + u32::from(r.len) <= oldest)
            .count();
        runs.drain(..gone);
        if let Some(r) = runs.first_mut()
            && r.start < oldest
        {
            let end = r.start + u32::from(r.len);
            r.len = (end - oldest) as u16;
            r.start = oldest;
        }
    }

    /// The day as a snapshot publishes it: the closed minutes shared,
    /// the current one as its verdict so far, held — as [`History::record`]
    /// holds it — for the minutes until the next check is due: a snapshot
    /// read in the minute after a check, before the next, shows the
    /// verdict still standing rather than a grey minute.
    pub fn day(&self) -> Day {
        Day {
            runs: Arc::clone(&self.runs),
            current: self.current.map_or(Run::default(), |m| Run {
                start: m.minute,
                len: u16::from(self.carry.max(1)),
                worst: m.worst,
                class: m.class(),
            }),
        }
    }
}

/// A last day as published (16 bytes a port in a snapshot): the closed
/// minutes, shared with the state's [`History`], and the current minute
/// as a run as long as its verdict holds (none when its length is 0;
/// [`Day::spans`] clips it at the minute asked about).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Day {
    runs: Arc<Runs>,
    current: Run,
}

impl Day {
    /// The spans of the last day before `now` (the current minute
    /// included), oldest first, clipped to the day.
    pub fn spans(&self, now: u32) -> impl Iterator<Item = Span> + '_ {
        let first = now.saturating_sub(MINUTES - 1);
        let current = Some(self.current).filter(|r| r.len > 0);
        self.runs
            .iter()
            .copied()
            .chain(current)
            .filter_map(move |r| {
                let end = (r.start + u32::from(r.len)).min(now + 1);
                let start = r.start.max(first);
                let worst = Health::of_weight(r.worst)?;
                (end > start).then(|| Span {
                    start,
                    minutes: end - start,
                    worst,
                    connect_seconds: (r.class > 0).then(|| class_seconds(r.class)),
                })
            })
    }

    /// The share of the minutes with a verdict (not `unknown`) in the last
    /// `minutes` before `now` whose worst health was ok or slow; None
    /// without any.
    pub fn uptime(&self, now: u32, minutes: u32) -> Option<f64> {
        let first = now.saturating_sub(minutes.saturating_sub(1));
        let (mut seen, mut good) = (0u32, 0u32);
        for s in self.spans(now) {
            let n = (s.start + s.minutes).saturating_sub(s.start.max(first));
            match s.worst {
                Health::Unknown => {}
                Health::Ok | Health::Slow => {
                    seen += n;
                    good += n;
                }
                Health::Hung | Health::Down => seen += n,
            }
        }
        (seen > 0).then(|| f64::from(good) / f64::from(seen))
    }

    /// Bytes the day's runs hold on the heap (shared by the state and
    /// the snapshots).
    pub fn heap_bytes(&self) -> usize {
        // The runs' allocation (counts and inline runs), and theirs on the
        // heap once they outgrow it.
        2 * std::mem::size_of::<usize>()
            + std::mem::size_of::<Runs>()
            + if self.runs.spilled() {
                self.runs.capacity() * std::mem::size_of::<Run>()
            } else {
                0
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One minute, as the tests read a day.
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Bucket {
        /// Minutes since the epoch.
        minute: u32,
        /// None: no check in that minute (grey).
        worst: Option<Health>,
        /// Median connect time, seconds (±4.5%: the class's precision).
        connect_seconds: Option<f64>,
    }

    impl History {
        /// The last day before `now`, a bucket a minute, oldest first (the
        /// current minute included): the spans spelt out.
        fn buckets(&self, now: u32) -> Vec<Bucket> {
            let first = now.saturating_sub(MINUTES - 1);
            let mut out: Vec<Bucket> = (first..=now)
                .map(|minute| Bucket {
                    minute,
                    worst: None,
                    connect_seconds: None,
                })
                .collect();
            for s in self.day().spans(now) {
                for m in s.start..s.start + s.minutes {
                    if let Some(b) = out.get_mut((m - first) as usize) {
                        b.worst = Some(s.worst);
                        b.connect_seconds = s.connect_seconds;
                    }
                }
            }
            out
        }
    }

    const DAY_START: u32 = 29_000_000;

    #[test]
    fn a_steady_day_is_one_run_of_a_few_bytes() {
        let mut h = History::default();
        for m in 0..MINUTES {
            // Loopback: 20 to 80 µs, four checks a minute.
            for k in 0..4 {
                let us = 20.0 + f64::from((m * 7 + k * 13) % 60);
                h.record(DAY_START + m, Health::Ok, Some(us / 1e6));
            }
        }
        h.record(DAY_START + MINUTES, Health::Ok, Some(30e-6));
        assert!(h.runs.len() <= 3, "{} runs", h.runs.len());
        let b = h.buckets(DAY_START + MINUTES);
        assert_eq!(b.len(), MINUTES as usize);
        assert!(b.iter().all(|b| b.worst == Some(Health::Ok)));
        assert_eq!(h.day().uptime(DAY_START + MINUTES, 60), Some(1.0));
        assert!(h.day().heap_bytes() < 200, "{} bytes", h.day().heap_bytes());
    }

    #[test]
    fn a_minute_down_shows_as_its_own_bucket_and_counts_against_uptime() {
        let mut h = History::default();
        for m in 0..60 {
            let health = if m == 30 { Health::Down } else { Health::Ok };
            h.record(DAY_START + m, Health::Ok, Some(0.001));
            // The worst of the minute wins.
            h.record(
                DAY_START + m,
                health,
                (health == Health::Ok).then_some(0.001),
            );
        }
        let now = DAY_START + 59;
        let b = h.buckets(now);
        let last_hour = &b[b.len() - 60..];
        assert_eq!(last_hour[30].worst, Some(Health::Down));
        assert_eq!(last_hour[29].worst, Some(Health::Ok));
        assert!((last_hour[29].connect_seconds.expect("a time") - 0.001).abs() < 0.001 * 0.05);
        // Before the first check: no data, grey.
        assert_eq!(b[0].worst, None);
        let up = h.day().uptime(now, 60).expect("checked");
        assert!((up - 59.0 / 60.0).abs() < 1e-9, "{up}");
        assert_eq!(h.day().uptime(now, 1440), Some(59.0 / 60.0));
    }

    #[test]
    fn a_port_that_flaps_all_day_stays_bounded_and_keeps_its_recent_end() {
        let mut h = History::default();
        for m in 0..MINUTES * 2 {
            let health = if m.is_multiple_of(2) {
                Health::Ok
            } else {
                Health::Hung
            };
            h.record(DAY_START + m, health, Some(0.0005));
            h.trim(DAY_START + m);
        }
        assert!(h.runs.len() <= MAX_RUNS, "{}", h.runs.len());
        assert!(h.day().heap_bytes() <= (MAX_RUNS + 64) * std::mem::size_of::<Run>() + 256);
        let now = DAY_START + MINUTES * 2 - 1;
        let b = h.buckets(now);
        // The last hour is exact.
        for (i, bucket) in b[b.len() - 60..].iter().enumerate() {
            let m = now - 59 + i as u32 - DAY_START;
            let want = if m.is_multiple_of(2) {
                Health::Ok
            } else {
                Health::Hung
            };
            assert_eq!(bucket.worst, Some(want), "minute {m}");
        }
        // The coarsened far end shows the worse of what it merged.
        assert!(b[..60].iter().all(|x| x.worst == Some(Health::Hung)));
    }

    #[test]
    fn a_day_old_minute_is_forgotten() {
        let mut h = History::default();
        h.record(DAY_START, Health::Down, None);
        h.record(DAY_START + 1, Health::Ok, Some(0.002));
        h.trim(DAY_START + MINUTES);
        h.record(DAY_START + MINUTES, Health::Ok, Some(0.002));
        let b = h.buckets(DAY_START + MINUTES);
        assert!(
            b.iter().all(|x| x.worst != Some(Health::Down)),
            "the down minute is a day old"
        );
        assert_eq!(b[0].minute, DAY_START + 1);
        assert_eq!(b[0].worst, Some(Health::Ok));
    }

    #[test]
    fn classes_keep_connect_times_within_five_percent() {
        for us in [1u32, 17, 250, 4_000, 1_000_000, 30_000_000] {
            let back = class_seconds(time_class(f64::from(us) / 1e6)) * 1e6;
            assert!(
                (back - f64::from(us)).abs() <= f64::from(us) * 0.045 + 0.5,
                "{us} → {back}"
            );
        }
    }

    #[test]
    fn anything_known_outweighs_unknown_and_unknown_is_not_downtime() {
        let mut h = History::default();
        h.record(DAY_START, Health::Unknown, None);
        h.record(DAY_START, Health::Ok, Some(0.0001));
        h.record(DAY_START + 1, Health::Unknown, None);
        let b = h.buckets(DAY_START + 1);
        assert_eq!(b[b.len() - 2].worst, Some(Health::Ok));
        assert_eq!(b[b.len() - 1].worst, Some(Health::Unknown));
        assert_eq!(h.day().uptime(DAY_START + 1, 60), Some(1.0));
        let spans: Vec<Span> = h.day().spans(DAY_START + 1).collect();
        assert_eq!(spans.len(), 2);
        assert_eq!((spans[0].start, spans[0].minutes), (DAY_START, 1));
    }

    #[test]
    fn a_clone_shares_the_closed_minutes_until_one_closes() {
        let mut h = History::default();
        for m in 0..10 {
            h.record(DAY_START + m, Health::Ok, Some(0.0001));
        }
        let snapshot = h.clone();
        assert!(Arc::ptr_eq(&h.runs, &snapshot.runs));
        // Within the same minute: still shared.
        h.record(DAY_START + 9, Health::Down, None);
        assert!(Arc::ptr_eq(&h.runs, &snapshot.runs));
        h.record(DAY_START + 10, Health::Ok, Some(0.0001));
        assert!(!Arc::ptr_eq(&h.runs, &snapshot.runs));
        // The snapshot kept what it saw.
        assert_eq!(
            snapshot.buckets(DAY_START + 9).last().and_then(|b| b.worst),
            Some(Health::Ok)
        );
    }

    #[test]
    fn a_busy_minute_keeps_the_median_of_its_last_checks() {
        let mut h = History::default();
        for k in 0..100u32 {
            // The first checks were slow; the last eight take 1 ms.
            let s = if k < 92 { 0.5 } else { 0.001 };
            h.record(DAY_START, Health::Ok, Some(s));
        }
        let c = h.buckets(DAY_START)[MINUTES as usize - 1]
            .connect_seconds
            .expect("a time");
        assert!((c - 0.001).abs() < 0.001 * 0.05, "{c}");
    }

    #[test]
    fn a_verdict_holds_until_the_next_check_within_the_interval() {
        // Checked every 2 minutes: the minute between is known.
        let mut h = History::carrying(History::carry_for(std::time::Duration::from_secs(120)));
        h.record(DAY_START, Health::Ok, Some(0.001));
        h.record(DAY_START + 2, Health::Down, None);
        let b = h.buckets(DAY_START + 2);
        let n = b.len();
        assert_eq!(b[n - 3].worst, Some(Health::Ok));
        assert_eq!(b[n - 2].worst, Some(Health::Ok), "carried");
        assert_eq!(b[n - 1].worst, Some(Health::Down));
        // A gap longer than the interval stays grey: nothing checked.
        h.record(DAY_START + 10, Health::Ok, Some(0.001));
        let b = h.buckets(DAY_START + 10);
        let n = b.len();
        // b[n - 1] is minute 10, b[n - 9] minute 2.
        assert_eq!(b[n - 9].worst, Some(Health::Down));
        assert_eq!(b[n - 8].worst, Some(Health::Down), "carried one minute");
        assert_eq!(b[n - 7].worst, Some(Health::Down), "and the next");
        assert_eq!(b[n - 6].worst, None);
        assert_eq!(b[n - 2].worst, None);
        // Read before the next check: the last verdict stands for as long
        // as it would be carried, then the minutes are grey.
        let d = h.day();
        let at = |now: u32| {
            d.spans(now)
                .last()
                .map(|s| (s.start + s.minutes - 1, s.worst))
        };
        assert_eq!(at(DAY_START + 10), Some((DAY_START + 10, Health::Ok)));
        assert_eq!(
            at(DAY_START + 12),
            Some((DAY_START + 12, Health::Ok)),
            "carried"
        );
        assert_eq!(
            at(DAY_START + 13),
            Some((DAY_START + 12, Health::Ok)),
            "no further"
        );
        assert_eq!(d.uptime(DAY_START + 12, 1), Some(1.0));
        assert_eq!(d.uptime(DAY_START + 13, 1), None);
        // Without a carry, a minute unchecked is grey.
        let mut h = History::default();
        h.record(DAY_START, Health::Ok, None);
        h.record(DAY_START + 2, Health::Ok, None);
        assert_eq!(h.buckets(DAY_START + 2)[MINUTES as usize - 2].worst, None);
    }
}
