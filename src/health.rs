//! One word per port — `ok`, `slow`, `hung`, `down` (or `unknown` before a
//! first check) — decided here and only here, for the metrics and for `ls`.
//!
//! - `down`: the port is gone, or a TCP connect failed.
//! - `hung`: the port listens but its application does not take
//!   connections: the accept queue was full at [`HUNG_PASSES`] passes in a
//!   row (the kernel then drops new SYNs, so connects fail too: hung, not
//!   down), or TCP connects succeed while a port that once answered HTTP no
//!   longer does.
//! - `slow`: the connect time is far above the port's own recent baseline
//!   ([`ConnectHistory`]).
//! - `ok`: none of these. A UDP port is `ok` while bound.

use crate::model::Proto;

/// Consecutive passes with a full accept queue that make a port hung: one
/// full queue can be a burst the application is about to drain.
pub const HUNG_PASSES: u32 = 2;

/// A port's (or a target's) health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    Ok,
    Slow,
    Hung,
    Down,
    Unknown,
}

impl Health {
    /// Every word, worst first: the one order of health (the status page's
    /// counts, its sort and its legend; a minute's worst word derives from
    /// it in [`Health::weight`]).
    pub const WORST_FIRST: [Health; 5] = [
        Health::Down,
        Health::Hung,
        Health::Slow,
        Health::Unknown,
        Health::Ok,
    ];

    /// The word written `s` (as [`Health::as_str`] writes it).
    pub fn parse(s: &str) -> Option<Health> {
        Self::WORST_FIRST.into_iter().find(|h| h.as_str() == s)
    }

    /// Where it sorts, worst first: 0 is the worst.
    pub fn severity(self) -> usize {
        Self::WORST_FIRST
            .iter()
            .position(|w| *w == self)
            .unwrap_or(Self::WORST_FIRST.len())
    }

    /// Its weight over a period (a minute of history keeps the heaviest
    /// word seen in it), from 1 to 5: the worse weighs more, and `unknown`,
    /// not knowing, weighs least: anything known in a minute outweighs it.
    pub fn weight(self) -> u8 {
        if self == Health::Unknown {
            return 1;
        }
        let worse_known = Self::WORST_FIRST
            .iter()
            .take_while(|w| **w != self)
            .filter(|w| **w != Health::Unknown)
            .count();
        (Self::WORST_FIRST.len() - worse_known) as u8
    }

    /// The word of a [`Health::weight`]; `None` for 0 (nothing seen).
    pub fn of_weight(weight: u8) -> Option<Health> {
        Self::WORST_FIRST.into_iter().find(|h| h.weight() == weight)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Slow => "slow",
            Health::Hung => "hung",
            Health::Down => "down",
            Health::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known of a port now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signals {
    pub proto: Proto,
    /// Still listening (or bound).
    pub present: bool,
    /// The last TCP check: `None` before the first, or when the port's
    /// namespace cannot be entered.
    pub tcp_alive: Option<bool>,
    /// Consecutive passes that found the accept queue full.
    pub queue_full_passes: u32,
    /// A port that once answered HTTP stopped answering it.
    pub http_stopped: bool,
    /// [`ConnectHistory::record`] says the connect time is far off.
    pub slow: bool,
}

/// The one word for `s`.
pub fn assess(s: &Signals) -> Health {
    if !s.present {
        return Health::Down;
    }
    if s.proto == Proto::Udp {
        return Health::Ok;
    }
    if s.queue_full_passes >= HUNG_PASSES {
        return Health::Hung;
    }
    match s.tcp_alive {
        Some(false) => Health::Down,
        _ if s.http_stopped => Health::Hung,
        None => Health::Unknown,
        Some(true) if s.slow => Health::Slow,
        Some(true) => Health::Ok,
    }
}

/// A target's word: `ok` when its last check passed, `down` when it failed,
/// `unknown` before the first (`last`: whether the last check passed).
pub fn of_target(last: Option<bool>) -> Health {
    match last {
        None => Health::Unknown,
        Some(true) => Health::Ok,
        Some(false) => Health::Down,
    }
}

/// The word from what can be read without touching the port (`ls` without
/// `--check`): a socket in LISTEN completes handshakes by itself unless its
/// accept queue is full, so that is what a connect would have found; a
/// queue full at both looks is hung.
pub fn assess_unchecked(s: &Signals) -> Health {
    assess(&Signals {
        tcp_alive: Some(true),
        slow: false,
        ..*s
    })
}

/// A port's recent connect times, to tell `slow` from its own normal: a
/// check is off when it takes more than [`ConnectHistory::FACTOR`] times
/// the median of the last [`ConnectHistory::WINDOW`] checks and at least
/// [`ConnectHistory::MIN_EXCESS`] seconds more (loopback connects take
/// microseconds; scheduling noise alone can multiply them). The port is
/// slow after [`ConnectHistory::STREAK`] off checks in a row. A lasting
/// change becomes the new normal once it fills half the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectHistory {
    /// The last [`ConnectHistory::WINDOW`] connect times as
    /// [`time_class`]es, a ring: a port's window is 32 bytes inline, no
    /// allocation (±4.5 % is plenty against a factor of 5).
    samples: [u8; ConnectHistory::WINDOW],
    len: u8,
    next: u8,
    streak: u32,
}

/// A duration on a log scale in one byte: microseconds ≈ 2^(class/8), each
/// class within ±4.5 % of the durations it stands for, from 1 µs to over an
/// hour. 0 is kept for "none" by those who need it.
pub fn time_class(seconds: f64) -> u8 {
    let micros = (seconds * 1e6).max(1.0);
    (micros.log2() * 8.0).round().clamp(1.0, 255.0) as u8
}

/// The duration a [`time_class`] stands for, in seconds.
pub fn class_seconds(class: u8) -> f64 {
    (f64::from(class) / 8.0).exp2() / 1e6
}

impl ConnectHistory {
    pub const WINDOW: usize = 30;
    pub const MIN_SAMPLES: usize = 5;
    pub const FACTOR: f64 = 5.0;
    pub const MIN_EXCESS: f64 = 0.010;
    pub const STREAK: u32 = 2;

    /// Records a successful check's connect time; says whether the port is
    /// slow now.
    pub fn record(&mut self, seconds: f64) -> bool {
        let off = self.median().is_some_and(|m| {
            usize::from(self.len) >= Self::MIN_SAMPLES
                && seconds > m * Self::FACTOR
                && seconds - m >= Self::MIN_EXCESS
        });
        self.streak = if off { self.streak + 1 } else { 0 };
        self.samples[usize::from(self.next)] = time_class(seconds);
        self.next = ((usize::from(self.next) + 1) % Self::WINDOW) as u8;
        self.len = (usize::from(self.len) + 1).min(Self::WINDOW) as u8;
        self.is_slow()
    }

    pub fn is_slow(&self) -> bool {
        self.streak >= Self::STREAK
    }

    /// The median of the recent connect times.
    pub fn median(&self) -> Option<f64> {
        let n = usize::from(self.len);
        if n == 0 {
            return None;
        }
        // The ring's first `len` slots hold the samples until it wraps,
        // then all of them do.
        let mut sorted = self.samples;
        let sorted = &mut sorted[..n];
        sorted.sort_unstable();
        let mid = n / 2;
        Some(if n.is_multiple_of(2) {
            (class_seconds(sorted[mid - 1]) + class_seconds(sorted[mid])) / 2.0
        } else {
            class_seconds(sorted[mid])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_order_of_health() {
        for h in Health::WORST_FIRST {
            assert_eq!(Health::parse(h.as_str()), Some(h));
            assert_eq!(Health::of_weight(h.weight()), Some(h));
        }
        assert_eq!(Health::of_weight(0), None);
        let weights: Vec<u8> = [
            Health::Unknown,
            Health::Ok,
            Health::Slow,
            Health::Hung,
            Health::Down,
        ]
        .map(Health::weight)
        .to_vec();
        assert_eq!(weights, [1, 2, 3, 4, 5]);
        assert!(Health::Down.severity() < Health::Unknown.severity());
        assert!(Health::Unknown.severity() < Health::Ok.severity());
        assert_eq!(of_target(None), Health::Unknown);
        assert_eq!(of_target(Some(false)), Health::Down);
    }

    fn tcp() -> Signals {
        Signals {
            proto: Proto::Tcp,
            present: true,
            tcp_alive: Some(true),
            queue_full_passes: 0,
            http_stopped: false,
            slow: false,
        }
    }

    #[test]
    fn one_word_with_the_worst_first() {
        assert_eq!(assess(&tcp()), Health::Ok);
        let gone = Signals {
            present: false,
            ..tcp()
        };
        assert_eq!(assess(&gone), Health::Down);
        let dead = Signals {
            tcp_alive: Some(false),
            ..tcp()
        };
        assert_eq!(assess(&dead), Health::Down);
        // A full queue makes connects fail too: that is a hung app.
        let full = Signals {
            tcp_alive: Some(false),
            queue_full_passes: 2,
            ..tcp()
        };
        assert_eq!(assess(&full), Health::Hung);
        let once = Signals {
            queue_full_passes: 1,
            ..tcp()
        };
        assert_eq!(assess(&once), Health::Ok);
        let http = Signals {
            http_stopped: true,
            slow: true,
            ..tcp()
        };
        assert_eq!(assess(&http), Health::Hung);
        let slow = Signals {
            slow: true,
            ..tcp()
        };
        assert_eq!(assess(&slow), Health::Slow);
        let unchecked = Signals {
            tcp_alive: None,
            ..tcp()
        };
        assert_eq!(assess(&unchecked), Health::Unknown);
        let udp = Signals {
            proto: Proto::Udp,
            tcp_alive: None,
            ..tcp()
        };
        assert_eq!(assess(&udp), Health::Ok);
    }

    #[test]
    fn slow_is_far_above_its_own_median_twice_in_a_row() {
        let mut h = ConnectHistory::default();
        // Loopback noise: 50–400 µs is normal, never slow.
        for s in [50e-6, 80e-6, 400e-6, 60e-6, 70e-6, 55e-6, 300e-6, 65e-6] {
            assert!(!h.record(s));
        }
        // 5 ms is 80× the median but only 5 ms more: noise, not slow.
        assert!(!h.record(0.005));
        assert!(!h.record(0.005));
        // 200 ms (a delay on the path): off once is not enough...
        assert!(!h.record(0.2));
        assert!(h.record(0.2));
        assert!(h.record(0.2));
        // ...and back to normal clears it.
        assert!(!h.record(60e-6));
    }

    #[test]
    fn a_lasting_change_becomes_the_new_normal() {
        let mut h = ConnectHistory::default();
        for _ in 0..10 {
            h.record(100e-6);
        }
        let slow_checks = (0..40).filter(|_| h.record(0.2)).count();
        assert!(slow_checks > 0 && slow_checks < 40, "{slow_checks}");
        assert!(!h.is_slow());
    }

    #[test]
    fn too_few_samples_say_nothing() {
        let mut h = ConnectHistory::default();
        for s in [100e-6, 0.5, 0.5] {
            assert!(!h.record(s));
        }
    }
}
