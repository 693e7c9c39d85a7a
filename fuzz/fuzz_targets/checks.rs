//! Checking by list, from hostile text: a target, a targets file, a module
//! file (blackbox.yml) and a certificate's DER parse or are refused with a
//! message, never a panic. Files a module names are looked up under a
//! directory that does not exist, so only parsing and validation run.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use portwarden::modules::Modules;
use portwarden::probe::check::plan;
use portwarden::probe::tls::validity;
use portwarden::targets::{bind, parse_endpoint, parse_file};

fuzz_target!(|data: &[u8]| {
    // A certificate: any dates read are in order of the file's fields.
    let _ = validity(data);
    let text = String::from_utf8_lossy(data);
    let builtin = Modules::builtin();
    for line in text.lines().take(8) {
        if parse_endpoint(line).is_ok() {
            for name in ["tcp_connect", "tls_connect", "http_2xx", "udp"] {
                if let Some(m) = builtin.get(name) {
                    let _ = plan(m, line);
                }
            }
        }
    }
    if let Ok(targets) = parse_file(&text, "fuzz.yml") {
        let _ = bind(targets, &builtin, "fuzz.yml");
    }
    let _ = Modules::parse(&text, "fuzz.yml", Path::new("/nonexistent/portwarden-fuzz"));
});
