//! One datagram of a sock_diag dump, as the kernel would send it: walked,
//! each answer's attributes searched. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portwarden::discover::sockets::{attribute, drops, walk_datagram};

fuzz_target!(|data: &[u8]| {
    let _ = walk_datagram(data, &mut |_header, attrs| {
        let _ = drops(attrs);
        for kind in 0..16 {
            let _ = attribute(attrs, kind);
        }
    });
});
