//! `/proc/<pid>/net/{tcp,tcp6,udp,udp6}` text: the first byte picks the
//! file, the rest is its text. Never a panic; every socket parsed is one the
//! file's protocol and family allow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portwarden::discover::sockets::parse_proc_net;
use portwarden::model::{Family, Proto};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let proto = if pick & 1 == 0 {
        Proto::Tcp
    } else {
        Proto::Udp
    };
    let family = if pick & 2 == 0 {
        Family::Ipv4
    } else {
        Family::Ipv6
    };
    let text = String::from_utf8_lossy(rest);
    if let Ok(sockets) = parse_proc_net(&text, proto, family) {
        for s in sockets {
            assert_eq!((s.proto, s.family), (proto, family));
            assert_eq!(s.address.is_ipv4(), family == Family::Ipv4);
        }
    }
});
