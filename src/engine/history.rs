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

use std::collections::VecDeque;

use crate::health::Health;

/// Minutes kept: a day.
pub const MINUTES: u32 = 24 * 60;
/// The most runs a port keeps (each [`std::mem::size_of::<Run>()`] bytes).
pub const MAX_RUNS: usize = 240;

/// Health as a bucket holds it, worst last (so `max` is the worse).
fn rank(h: Health) -> u8 {
    match h {
        Health::Ok => 1,
        Health::Slow => 2,
        Health::Unknown => 3,
        Health::Hung => 4,
        Health::Down => 5,
    }
}

fn of_rank(r: u8) -> Option<Health> {
    Some(match r {
        1 => Health::Ok,
        2 => Health::Slow,
        3 => Health::Unknown,
        4 => Health::Hung,
        5 => Health::Down,
        _ => return None,
    })
}

/// Minutes in a row alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    /// Its first minute (minutes since the epoch).
    start: u32,
    len: u16,
    /// [`rank`] of the worst health.
    worst: u8,
    /// Median connect time as a class: microseconds ≈ 2^(class/8); 0 for
    /// none (no successful connect in it).
    class: u8,
}

/// One minute as the page shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Minutes since the epoch.
    pub minute: u32,
    /// None: no check in that minute (grey).
    pub worst: Option<Health>,
    /// Median connect time, seconds (±4.5%: the class's precision).
    pub connect_seconds: Option<f64>,
}

/// A port's last day.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    runs: VecDeque<Run>,
    /// The minute being filled: its index, worst rank, connect times (µs).
    current: Option<(u32, u8, Vec<u32>)>,
}

fn class_of(micros: u32) -> u8 {
    if micros == 0 {
        return 1;
    }
    ((f64::from(micros).log2() * 8.0).round() as i64).clamp(1, 255) as u8
}

fn micros_of(class: u8) -> f64 {
    (f64::from(class) / 8.0).exp2()
}

impl History {
    /// Records a check at `minute`: its health, and its connect time when
    /// it connected. Minutes only move forward; a late one joins the
    /// current minute.
    pub fn record(&mut self, minute: u32, health: Health, connect_seconds: Option<f64>) {
        let micros =
            connect_seconds.map(|s| (s * 1e6).round().clamp(0.0, f64::from(u32::MAX)) as u32);
        match &mut self.current {
            Some((m, worst, times)) if minute <= *m => {
                *worst = (*worst).max(rank(health));
                // A minute holds at most a few checks; keep it bounded.
                if let Some(us) = micros
                    && times.len() < 64
                {
                    times.push(us);
                }
            }
            _ => {
                self.close();
                self.current = Some((minute, rank(health), micros.into_iter().collect()));
            }
        }
    }

    /// Ends the current minute: into the runs.
    fn close(&mut self) {
        let Some((minute, worst, mut times)) = self.current.take() else {
            return;
        };
        let class = if times.is_empty() {
            0
        } else {
            times.sort_unstable();
            class_of(times[times.len() / 2])
        };
        let joins = self.runs.back().is_some_and(|r| {
            r.start + u32::from(r.len) == minute
                && r.worst == worst
                && r.len < u16::MAX
                && (r.class == class || (r.class > 0 && class > 0 && r.class.abs_diff(class) <= 8))
        });
        match self.runs.back_mut() {
            Some(r) if joins => r.len += 1,
            _ => self.runs.push_back(Run {
                start: minute,
                len: 1,
                worst,
                class,
            }),
        }
        if self.runs.len() > MAX_RUNS
            && let (Some(a), Some(b)) = (self.runs.pop_front(), self.runs.pop_front())
        {
            // The two oldest become one: the far end coarsens.
            let end = b.start + u32::from(b.len);
            self.runs.push_front(Run {
                start: a.start,
                len: (end - a.start).min(u32::from(u16::MAX)) as u16,
                worst: a.worst.max(b.worst),
                class: if a.class > 0 { a.class } else { b.class },
            });
        }
    }

    /// Drops what is older than a day before `now` (minutes since the
    /// epoch).
    pub fn trim(&mut self, now: u32) {
        let oldest = now.saturating_sub(MINUTES - 1);
        while let Some(r) = self.runs.front_mut() {
            let end = r.start + u32::from(r.len);
            if end <= oldest {
                self.runs.pop_front();
            } else {
                if r.start < oldest {
                    r.len = (end - oldest) as u16;
                    r.start = oldest;
                }
                break;
            }
        }
    }

    /// The last day before `now`, a bucket a minute, oldest first (the
    /// current minute included): [`MINUTES`] buckets.
    pub fn buckets(&self, now: u32) -> Vec<Bucket> {
        let first = now.saturating_sub(MINUTES - 1);
        let mut out: Vec<Bucket> = (first..=now)
            .map(|minute| Bucket {
                minute,
                worst: None,
                connect_seconds: None,
            })
            .collect();
        let mut put = |minute: u32, worst: u8, class: u8| {
            if let Some(b) = minute
                .checked_sub(first)
                .and_then(|i| out.get_mut(i as usize))
            {
                b.worst = of_rank(worst);
                b.connect_seconds = (class > 0).then(|| micros_of(class) / 1e6);
            }
        };
        for r in &self.runs {
            for m in r.start..r.start + u32::from(r.len) {
                put(m, r.worst, r.class);
            }
        }
        if let Some((minute, worst, times)) = &self.current {
            let mut sorted = times.clone();
            sorted.sort_unstable();
            let class = sorted.get(sorted.len() / 2).map_or(0, |us| class_of(*us));
            put(*minute, *worst, class);
        }
        out
    }

    /// The share of minutes with a check in the last `minutes` before
    /// `now` whose worst health was ok or slow; None without any.
    pub fn uptime(&self, now: u32, minutes: u32) -> Option<f64> {
        let buckets = self.buckets(now);
        let recent = &buckets[buckets.len().saturating_sub(minutes as usize)..];
        let seen = recent.iter().filter(|b| b.worst.is_some()).count();
        let good = recent
            .iter()
            .filter(|b| matches!(b.worst, Some(Health::Ok | Health::Slow)))
            .count();
        (seen > 0).then(|| good as f64 / seen as f64)
    }

    /// Bytes this history holds on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.runs.capacity() * std::mem::size_of::<Run>()
            + self
                .current
                .as_ref()
                .map_or(0, |(_, _, t)| t.capacity() * std::mem::size_of::<u32>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(h.uptime(DAY_START + MINUTES, 60), Some(1.0));
        assert!(h.heap_bytes() < 200, "{} bytes", h.heap_bytes());
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
        let up = h.uptime(now, 60).expect("checked");
        assert!((up - 59.0 / 60.0).abs() < 1e-9, "{up}");
        assert_eq!(h.uptime(now, 1440), Some(59.0 / 60.0));
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
        assert!(h.heap_bytes() <= (MAX_RUNS + 64) * std::mem::size_of::<Run>() + 256);
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
            let back = micros_of(class_of(us));
            assert!(
                (back - f64::from(us)).abs() <= f64::from(us) * 0.045 + 0.5,
                "{us} → {back}"
            );
        }
    }
}
