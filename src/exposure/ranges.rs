//! Sets of values as sorted, disjoint, inclusive ranges: the addresses or
//! ports a path through a ruleset admits. An IPv4 address is its 32-bit
//! value, an IPv6 address its 128-bit one, a port its 16-bit one.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ranges(Vec<(u128, u128)>);

impl Ranges {
    pub fn empty() -> Ranges {
        Ranges(Vec::new())
    }

    /// Every value of `bits` bits.
    pub fn full(bits: u32) -> Ranges {
        Ranges(vec![(0, max(bits))])
    }

    pub fn one(lo: u128, hi: u128) -> Ranges {
        if lo <= hi {
            Ranges(vec![(lo, hi)])
        } else {
            Ranges::empty()
        }
    }

    pub fn of(mut ranges: Vec<(u128, u128)>) -> Ranges {
        ranges.retain(|(lo, hi)| lo <= hi);
        ranges.sort_unstable();
        let mut out: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match out.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        Ranges(out)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn ranges(&self) -> &[(u128, u128)] {
        &self.0
    }

    pub fn contains(&self, v: u128) -> bool {
        self.0.iter().any(|&(lo, hi)| lo <= v && v <= hi)
    }

    pub fn intersect(&self, other: &Ranges) -> Ranges {
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < self.0.len() && j < other.0.len() {
            let (a, b) = (self.0[i], other.0[j]);
            let (lo, hi) = (a.0.max(b.0), a.1.min(b.1));
            if lo <= hi {
                out.push((lo, hi));
            }
            if a.1 < b.1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        Ranges(out)
    }

    /// What of `self` is not in `other`.
    pub fn minus(&self, other: &Ranges) -> Ranges {
        let mut out = Vec::new();
        for &(lo, hi) in &self.0 {
            let mut start = Some(lo);
            for &(olo, ohi) in &other.0 {
                let Some(s) = start else { break };
                if ohi < s || olo > hi {
                    continue;
                }
                if olo > s {
                    out.push((s, olo - 1));
                }
                start = if ohi >= hi { None } else { Some(ohi + 1) };
            }
            if let Some(s) = start {
                out.push((s, hi));
            }
        }
        Ranges(out)
    }

    /// As CIDR blocks of `bits`-bit addresses (`10.0.0.0/8`), or ports.
    pub fn describe(&self, kind: Kind) -> String {
        let mut out = String::new();
        for &(lo, hi) in &self.0 {
            if !out.is_empty() {
                out.push_str(", ");
            }
            match kind {
                Kind::Port => {
                    if lo == hi {
                        let _ = write!(out, "{lo}");
                    } else {
                        let _ = write!(out, "{lo}-{hi}");
                    }
                }
                Kind::V4 | Kind::V6 => {
                    let bits = if kind == Kind::V4 { 32 } else { 128 };
                    let blocks = cidrs(lo, hi, bits);
                    if blocks.len() > 4 {
                        let _ = write!(out, "{}-{}", addr(lo, kind), addr(hi, kind));
                        continue;
                    }
                    for (n, (base, len)) in blocks.into_iter().enumerate() {
                        if n > 0 {
                            out.push_str(", ");
                        }
                        if len == bits {
                            out.push_str(&addr(base, kind));
                        } else {
                            let _ = write!(out, "{}/{len}", addr(base, kind));
                        }
                    }
                }
            }
        }
        out
    }
}

/// What a range's values are, for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    V4,
    V6,
    Port,
}

pub fn max(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

fn addr(v: u128, kind: Kind) -> String {
    match kind {
        Kind::V4 => Ipv4Addr::from(v as u32).to_string(),
        Kind::V6 => Ipv6Addr::from(v).to_string(),
        Kind::Port => v.to_string(),
    }
}

/// The fewest CIDR blocks covering [lo, hi] exactly.
fn cidrs(mut lo: u128, hi: u128, bits: u32) -> Vec<(u128, u32)> {
    let mut out = Vec::new();
    loop {
        // The largest block starting at lo that stays within hi.
        let mut size = if lo == 0 {
            bits
        } else {
            lo.trailing_zeros().min(bits)
        };
        while size > 0 && lo + (max(size)) > hi {
            size -= 1;
        }
        out.push((lo, bits - size));
        let end = lo + max(size);
        if end >= hi {
            return out;
        }
        lo = end + 1;
    }
}

/// A big-endian field's value.
pub fn be(bytes: &[u8]) -> u128 {
    bytes
        .iter()
        .take(16)
        .fold(0u128, |acc, b| (acc << 8) | u128::from(*b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_meet_and_subtract() {
        let all = Ranges::full(32);
        let ten = Ranges::one(0x0a00_0000, 0x0aff_ffff);
        let rest = all.minus(&ten);
        assert_eq!(
            rest.ranges(),
            &[(0, 0x09ff_ffff), (0x0b00_0000, 0xffff_ffff)]
        );
        assert!(rest.intersect(&ten).is_empty());
        assert_eq!(
            Ranges::of(vec![(5, 9), (1, 4), (20, 30)]).ranges(),
            &[(1, 9), (20, 30)]
        );
        assert_eq!(ten.describe(Kind::V4), "10.0.0.0/8");
        assert_eq!(
            Ranges::one(0x0a00_0001, 0x0a00_0002).describe(Kind::V4),
            "10.0.0.1/32, 10.0.0.2/32".replace("/32", "")
        );
        assert_eq!(
            Ranges::full(128)
                .minus(&Ranges::one(1, 1))
                .describe(Kind::V6),
            "::, ::2-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        assert_eq!(Ranges::one(53, 53).describe(Kind::Port), "53");
    }
}
