//! The start of an HTTP response, as the prober reads it (at most 4 KiB).
//! Never a panic; a complete response has a three-digit status.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portwarden::probe::http::{Parsed, parse_response};

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(4096)];
    if let Parsed::Complete { status } = parse_response(data) {
        assert!(status <= 999);
    }
});
