//! Whether a TCP port speaks HTTP, and when it is asked again: a first
//! answer is never the last word.

use std::time::{Duration, Instant};

use crate::probe::http::{HttpOutcome, Verdict};
use crate::value::time::Tick;

/// Whether a TCP port speaks HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpClass {
    /// Has not answered HTTP (yet): a new port, a new owner on it, or one
    /// that answered something else or nothing. Asked again from `next` on,
    /// with a back-off: a first answer is never the last word (a busy server
    /// drops or delays a request now and then).
    Unknown {
        /// Definitive answers that were not HTTP, in a row.
        refused: u16,
        /// Inconclusive ones (timeout, unreachable), in a row.
        silent: u16,
        /// Four bytes, not an `Instant`'s sixteen: every port keeps one.
        next: Tick,
    },
    /// Answered HTTP once; `alive` is the last check.
    Http { alive: bool },
}

/// Inconclusive answers asked again at the very next round before backing off.
const SILENT_RETRIES: u16 = 3;

impl HttpClass {
    /// Not known: to be asked at the next round.
    pub fn unknown() -> HttpClass {
        HttpClass::Unknown {
            refused: 0,
            silent: 0,
            next: Tick::START,
        }
    }

    /// Whether a round starting at `now` asks it.
    pub fn due(&self, now: Instant) -> bool {
        match self {
            HttpClass::Unknown { next, .. } => next.instant() <= now,
            HttpClass::Http { .. } => true,
        }
    }

    /// What an answer to a check started at `asked` makes of it. `period`
    /// is the HTTP interval; no port goes unasked for longer than `longest`
    /// (the label interval, when owners are rescanned in full).
    pub fn after(
        self,
        outcome: &HttpOutcome,
        asked: Instant,
        period: Duration,
        longest: Duration,
    ) -> HttpClass {
        let (mut refused, mut silent) = match self {
            _ if outcome.is_http() => return HttpClass::Http { alive: true },
            // Our own fault: the last value stands.
            _ if outcome.verdict() == Verdict::Ours => return self,
            // Once HTTP, any other answer is a stop: 0, kept.
            HttpClass::Http { .. } => return HttpClass::Http { alive: false },
            HttpClass::Unknown {
                refused, silent, ..
            } => (refused, silent),
        };
        let wait = match outcome.verdict() {
            // A server that speaks first: not asked again before the next
            // full rescan (or a new owner).
            _ if *outcome == HttpOutcome::Banner => {
                refused = refused.saturating_add(1);
                longest
            }
            Verdict::NotHttp => {
                refused = refused.saturating_add(1);
                silent = 0;
                backoff(period, refused, longest)
            }
            _ => {
                silent = silent.saturating_add(1);
                if silent <= SILENT_RETRIES {
                    period
                } else {
                    backoff(period, silent - SILENT_RETRIES, longest)
                }
            }
        };
        HttpClass::Unknown {
            refused,
            silent,
            // Due at the round that starts `wait` after this one; half a
            // period of slack for where in its round the check ran.
            next: Tick::at(asked + wait.saturating_sub(period / 2)),
        }
    }
}

/// One period after the first miss, doubling after each, at most `longest`.
fn backoff(period: Duration, misses: u16, longest: Duration) -> Duration {
    let doublings = u32::from(misses.max(1) - 1).min(20);
    period.saturating_mul(1 << doublings).min(longest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where an HTTP class stands after each outcome in turn, as the
    /// number of periods until it is asked again (None: asked every round).
    fn waits(outcomes: &[HttpOutcome]) -> Vec<Option<u32>> {
        let period = Duration::from_secs(10);
        let longest = Duration::from_secs(3600);
        let asked = Instant::now();
        let mut class = HttpClass::unknown();
        outcomes
            .iter()
            .map(|o| {
                class = class.after(o, asked, period, longest);
                match class {
                    HttpClass::Http { .. } => None,
                    HttpClass::Unknown { next, .. } => {
                        // Half a period of slack is taken off `next`.
                        let wait = next.instant() - asked + period / 2;
                        Some((wait.as_secs_f64() / period.as_secs_f64()).round() as u32)
                    }
                }
            })
            .collect()
    }

    #[test]
    fn http_detection_backs_off_but_never_gives_up() {
        use HttpOutcome::*;
        // A drop, a reset, bytes that are not HTTP: asked again at the next
        // round, then after 2, 4, 8 ... rounds, at most the label interval.
        assert_eq!(
            waits(&[Closed, Closed, NotHttp, Closed]),
            [Some(1), Some(2), Some(4), Some(8)]
        );
        let many = vec![Closed; 20];
        assert_eq!(waits(&many).last(), Some(&Some(360)));
        // Silence or no connection: the next round three times, then back off.
        assert_eq!(
            waits(&[Timeout, Unreachable, Timeout, Timeout, Timeout]),
            [Some(1), Some(1), Some(1), Some(1), Some(2)]
        );
        // A banner: not before the next full rescan.
        assert_eq!(waits(&[Banner]), [Some(360)]);
        // An answer at any point: HTTP from then on, 0 when it stops.
        assert_eq!(waits(&[Closed, Timeout, Answered { status: 200 }])[2], None);
        let class = HttpClass::unknown()
            .after(
                &Closed,
                Instant::now(),
                Duration::from_secs(1),
                Duration::from_secs(60),
            )
            .after(
                &Answered { status: 404 },
                Instant::now(),
                Duration::from_secs(1),
                Duration::from_secs(60),
            );
        assert_eq!(class, HttpClass::Http { alive: true });
        for o in [Timeout, Closed, Banner, NotHttp, Unreachable] {
            assert_eq!(
                class.after(
                    &o,
                    Instant::now(),
                    Duration::from_secs(1),
                    Duration::from_secs(60)
                ),
                HttpClass::Http { alive: false },
                "{o:?}"
            );
        }
    }
}
