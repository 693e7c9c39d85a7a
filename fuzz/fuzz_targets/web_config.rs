//! `--web.config.file` and the `Authorization` header: any bytes parse or
//! are refused with a message, never a panic. Files the config names are
//! looked up under a directory that does not exist, so only parsing and
//! validation run.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use portwarden::server::auth::basic_credentials;
use portwarden::server::web_config::{build, parse};

fuzz_target!(|data: &[u8]| {
    let _ = basic_credentials(data);
    if let Ok(file) = parse(&String::from_utf8_lossy(data)) {
        let _ = build(file, Path::new("/nonexistent/portwarden-fuzz"));
    }
});
