//! Networks written as CIDRs (`169.254.0.0/16`, `fe80::/10`, or one address)
//! and lists of them, for the flags that say where a check may connect. An
//! IPv4-mapped IPv6 address (`::ffff:169.254.169.254`) is the IPv4 address
//! it maps: writing it the other way round must not slip past a list.

use std::net::IpAddr;

/// One network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `a.b.c.d/n`, `x::/n`, or an address alone (the whole address).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let invalid = || {
            format!(
                "invalid network '{s}' (expected a CIDR such as 169.254.0.0/16 or fe80::/10, or an address)"
            )
        };
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let written: IpAddr = addr.parse().map_err(|_| invalid())?;
        let most = if written.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => most,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= most)
                .ok_or_else(invalid)?,
        };
        let addr = written.to_canonical();
        // `::ffff:a.b.c.d/n` is the IPv4 network of n - 96 bits.
        let prefix = if addr.is_ipv4() && written.is_ipv6() {
            prefix.checked_sub(96).ok_or_else(invalid)?
        } else {
            prefix
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| match ip {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32u32),
            IpAddr::V6(a) => (u128::from(a), 128u32),
        };
        let ((net, width), (ip, ip_width)) = (bits(self.addr), bits(ip.to_canonical()));
        if width != ip_width {
            return false;
        }
        let host_bits = width - u32::from(self.prefix);
        host_bits >= width || (net >> host_bits) == (ip >> host_bits)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A list of networks, as a flag takes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks(pub Vec<Cidr>);

/// A comma-separated list of networks; empty is none.
pub fn parse_list(s: &str) -> Result<Networks, String> {
    s.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(Cidr::parse)
        .collect::<Result<_, _>>()
        .map(Networks)
}

/// What `--probe.deny` holds unless told otherwise: link-local networks,
/// where clouds serve instance metadata and credentials.
pub const LINK_LOCAL: &str = "169.254.0.0/16,fe80::/10";

/// Hosts and networks a check may reach; none listed: any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allow {
    /// Host names, lowercase, as written in targets.
    pub hosts: Vec<String>,
    pub nets: Vec<Cidr>,
}

impl Allow {
    /// `host` or CIDR items, comma-separated; empty: any.
    pub fn parse(s: &str) -> Result<Allow, String> {
        let mut allow = Allow::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match Cidr::parse(item) {
                Ok(net) => allow.nets.push(net),
                Err(_) if super::is_host_name(item) => allow.hosts.push(item.to_ascii_lowercase()),
                Err(_) => {
                    return Err(format!(
                        "invalid item '{item}' (expected host names or CIDRs, comma-separated, e.g. db.internal,10.0.0.0/8)"
                    ));
                }
            }
        }
        Ok(allow)
    }

    /// Nothing listed: anywhere not denied.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.nets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn networks_contain_their_addresses_and_no_others() {
        let link_local = Cidr::parse("169.254.0.0/16").expect("cidr");
        assert!(link_local.contains(ip("169.254.169.254")));
        assert!(link_local.contains(ip("::ffff:169.254.169.254")));
        assert!(!link_local.contains(ip("169.255.0.1")));
        assert!(!link_local.contains(ip("fe80::1")));
        let v6 = Cidr::parse("fe80::/10").expect("cidr");
        assert!(v6.contains(ip("fe80::1")));
        assert!(v6.contains(ip("febf::1")));
        assert!(!v6.contains(ip("fec0::1")));
        let everything = Cidr::parse("0.0.0.0/0").expect("cidr");
        assert!(everything.contains(ip("8.8.8.8")));
        assert!(!everything.contains(ip("::1")));
        let one = Cidr::parse("127.0.0.1").expect("cidr");
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        assert!(
            Cidr::parse("::ffff:10.0.0.0/104")
                .expect("mapped")
                .contains(ip("10.1.2.3"))
        );
    }

    #[test]
    fn bad_networks_are_refused_by_name() {
        for bad in [
            "",
            "10.0.0.0/33",
            "fe80::/129",
            "10.0.0/8",
            "x",
            "10.0.0.0/-1",
            "::ffff:10.0.0.0/8",
        ] {
            let err = Cidr::parse(bad).expect_err(bad);
            assert!(err.contains("expected a CIDR"), "{err}");
        }
        assert_eq!(
            parse_list(" 10.0.0.0/8 , ,fe80::/10")
                .expect("list")
                .0
                .len(),
            2
        );
        assert!(parse_list("").expect("empty").0.is_empty());
    }
}
