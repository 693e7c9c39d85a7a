//! Values and units every part of portwarden reads the same way: Go's
//! durations and booleans (the plugin's environment variables), ports,
//! protocols, listen addresses, networks ([`cidr`]) and Unix time with its
//! calendar ([`time`]).
//!
//! A leaf: it imports nothing else from the crate (a test reads its `use`
//! lines), so the flags, the files (targets, modules, actions, allow-list),
//! the status page's query and the CLI all parse with one rule each.

pub mod cidr;
pub mod time;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Transport protocol of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }

    /// `tcp` or `udp`, lowercase as every file, flag and query writes it.
    pub fn parse(s: &str) -> Result<Proto, String> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            _ => Err(format!("invalid protocol '{s}' (expected tcp or udp)")),
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where events are written: nowhere, standard output, journald (its
/// native protocol), or a file (JSON lines, appended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    None,
    Stdout,
    Journald,
    File(std::path::PathBuf),
}

impl Sink {
    /// `none`, `stdout`, `journald`, or a file's path.
    pub fn parse(s: &str) -> Result<Sink, String> {
        match s {
            "none" => Ok(Sink::None),
            "stdout" | "-" => Ok(Sink::Stdout),
            "journald" => Ok(Sink::Journald),
            "" => Err("an empty output (expected none, stdout, journald or a file's path)".into()),
            path => Ok(Sink::File(path.into())),
        }
    }
}

/// A port a socket can listen on: 1 to 65535 (0 is "any port" to `bind`,
/// never a listening port).
pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!(
            "invalid port '{s}' (expected a number from 1 to 65535)"
        )),
    }
}

/// A host name as DNS writes it: dot-separated labels of letters, digits,
/// `-` and `_`, each 1 to 63 long, 253 at most in all.
pub fn is_host_name(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A whole number from `MIN` to 100,000.
pub fn parse_count<const MIN: usize>(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (MIN..=100_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "invalid number '{s}' (expected a whole number from {MIN} to 100000)"
        )),
    }
}

/// Parses a duration in Go's syntax (`time.ParseDuration`): a sequence of
/// decimal numbers, each with an optional fraction and a unit (`ns`, `us`,
/// `µs`, `ms`, `s`, `m`, `h`), e.g. `300ms`, `1m`, `1h30m`, `1.5h`; `0` alone
/// is zero. Negative durations are refused: none of ours can be negative.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration '{s}' (expected e.g. 30s, 1m, 8h)");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(invalid()),
        };
        total += value * nanos_per_unit;
        rest = &rest[unit_len..];
    }
    // Go's limit: durations are an int64 of nanoseconds (about 292 years).
    if total > i64::MAX as f64 {
        return Err(invalid());
    }
    Ok(Duration::from_nanos(total.round() as u64))
}

/// A duration above zero, in Go's syntax (an interval, a timeout).
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    match parse_go_duration(s)? {
        d if d.is_zero() => Err(format!("must be more than zero, got '{s}'")),
        d => Ok(d),
    }
}

/// How often a target may be checked, at most: once a second.
pub const MIN_TARGET_INTERVAL: Duration = Duration::from_secs(1);

/// A target's interval: a duration of at least [`MIN_TARGET_INTERVAL`].
pub fn parse_target_interval(s: &str) -> Result<Duration, String> {
    match parse_interval(s)? {
        d if d < MIN_TARGET_INTERVAL => Err(format!(
            "'{s}' is too often (a target is checked at most once a second)"
        )),
        d => Ok(d),
    }
}

/// Parses a boolean as Go's `strconv.ParseBool` does.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid boolean '{s}' (expected true or false)")),
    }
}

/// `[host]:port`, as Prometheus exporters take it: `:9765` means every
/// address (IPv6 and IPv4), `127.0.0.1:9765`, `[::1]:9765`.
pub fn parse_listen_address(s: &str) -> Result<SocketAddr, String> {
    let invalid = || {
        format!(
            "invalid address '{s}' (expected [host]:port, e.g. :9765, 127.0.0.1:9765 or [::1]:9765)"
        )
    };
    let full = if s.starts_with(':') {
        format!("[::]{s}")
    } else {
        s.to_string()
    };
    full.parse::<SocketAddr>().map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_go_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_go_duration("1s"), Ok(ms(1000)));
        assert_eq!(parse_go_duration("1m"), Ok(ms(60_000)));
        assert_eq!(parse_go_duration("8h"), Ok(ms(8 * 3_600_000)));
        assert_eq!(parse_go_duration("1h30m"), Ok(ms(90 * 60_000)));
        assert_eq!(parse_go_duration("1.5h"), Ok(ms(90 * 60_000)));
        assert_eq!(parse_go_duration("2m3.5s"), Ok(ms(123_500)));
        assert_eq!(parse_go_duration("300us"), Ok(Duration::from_micros(300)));
        assert_eq!(parse_go_duration("300µs"), Ok(Duration::from_micros(300)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        for bad in [
            "", "banana", "1", "1x", "m", "1.2.3s", "-1s", "1 m", "1m ", ".s", "1hh",
        ] {
            let err = parse_go_duration(bad).expect_err(bad);
            assert_eq!(
                err,
                format!("invalid duration '{bad}' (expected e.g. 30s, 1m, 8h)")
            );
        }
    }

    #[test]
    fn go_bools() {
        for t in ["1", "t", "T", "true", "TRUE", "True"] {
            assert_eq!(parse_go_bool(t), Ok(true));
        }
        for f in ["0", "f", "F", "false", "FALSE", "False"] {
            assert_eq!(parse_go_bool(f), Ok(false));
        }
        assert!(parse_go_bool("yes").is_err());
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen_address(":9765"),
            Ok("[::]:9765".parse().expect("addr"))
        );
        assert_eq!(
            parse_listen_address("127.0.0.1:1"),
            Ok("127.0.0.1:1".parse().expect("addr"))
        );
        assert_eq!(
            parse_listen_address("[::1]:80"),
            Ok("[::1]:80".parse().expect("addr"))
        );
        assert!(parse_listen_address("9765").is_err());
        assert!(parse_listen_address("localhost:99999").is_err());
    }

    #[test]
    fn ports_are_one_to_65535() {
        assert_eq!(parse_port("22"), Ok(22));
        assert_eq!(parse_port("65535"), Ok(65535));
        for bad in ["0", "65536", "-1", "ssh", ""] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn protocols_are_lowercase() {
        assert_eq!(Proto::parse("tcp"), Ok(Proto::Tcp));
        assert_eq!(Proto::parse("udp"), Ok(Proto::Udp));
        assert!(Proto::parse("TCP").is_err());
        assert!(Proto::parse("sctp").is_err());
    }

    #[test]
    fn intervals_are_above_zero() {
        assert_eq!(parse_interval("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_interval("0").is_err());
        assert!(parse_interval("0s").is_err());
    }
}
