//! The baseline file and the allowlist file: whatever is on disk parses or
//! is refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portwarden::baseline::{Allowlist, parse};

fuzz_target!(|data: &[u8]| {
    let _ = parse(data);
    let _ = Allowlist::parse(&String::from_utf8_lossy(data));
});
