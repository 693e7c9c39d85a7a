//! The big ruleset the exposure figures are measured with: 1,000 rules
//! (conntrack first, 600 single-port accepts, 150 source-restricted ports,
//! 100 UDP ports, 45 source-only accepts) and Docker's shape for 50
//! published ports (a DNAT each in prerouting to a container behind
//! `docker0`, a forward chain accepting each). Shared by
//! `benches/exposure.rs` and `examples/ruleset.rs` (which prints it for
//! `nft -f`, as `bench/rss-ruleset.sh` loads it).

/// The ruleset, as `nft -f` reads it (it flushes the namespace's first).
pub fn text() -> String {
    let rules = [
        "ct state established,related accept",
        "ct state invalid drop",
        "iif lo accept",
        "meta l4proto { icmp, ipv6-icmp } accept",
        "jump services",
    ];
    let mut services = Vec::new();
    for p in 20_000..20_600 {
        services.push(format!("tcp dport {p} accept"));
    }
    for i in 0..150u32 {
        services.push(format!(
            "ip saddr 10.1.{}.{} tcp dport {} accept",
            i / 200,
            i % 200 + 1,
            21_000 + i
        ));
    }
    for p in 0..100 {
        services.push(format!("udp dport {} accept", 30_000 + p));
    }
    for i in 0..45 {
        services.push(format!("ip saddr 172.16.{i}.0/24 accept"));
    }
    // Docker's shape: ports 29000–29049 published to 50 containers.
    let (mut dnat, mut forward) = (Vec::new(), Vec::new());
    for i in 0..50u32 {
        let addr = format!("172.30.{}.{}", i / 200, i % 200 + 2);
        dnat.push(format!(
            "iifname != \"docker0\" tcp dport {} dnat to {addr}:80",
            29_000 + i
        ));
        forward.push(format!(
            "oifname \"docker0\" ip daddr {addr} tcp dport 80 accept"
        ));
    }
    format!(
        "flush ruleset\ntable inet filter {{\n chain input {{\n  type filter hook input priority 0; policy drop;\n  {}\n }}\n chain services {{\n  {}\n }}\n chain forward {{\n  type filter hook forward priority 0; policy drop;\n  ct state established,related accept\n  {}\n }}\n}}\ntable ip nat {{\n chain prerouting {{\n  type nat hook prerouting priority dstnat; policy accept;\n  {}\n }}\n}}\n",
        rules.join("\n  "),
        services.join("\n  "),
        forward.join("\n  "),
        dnat.join("\n  ")
    )
}
