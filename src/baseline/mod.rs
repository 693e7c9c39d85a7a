//! Expected ports: the baseline of what should listen on this host.
//!
//! A port seen continuously for `--baseline.learn` becomes expected. The
//! baseline is a JSON file in the state directory, written atomically (a
//! temporary file, fsync, rename, fsync of the directory), so a crash
//! mid-write leaves the old file or the new one, never a torn one; every
//! read-modify-write holds an exclusive lock on a lock file beside it, so
//! the exporter and `portwarden baseline …` never lose each other's edits.
//! A file that does not parse is kept aside as `baseline.json.bad.<time>`
//! (the newest [`KEEP_BAD`] are kept) and a fresh baseline started; one of a
//! newer version (after a downgrade) is left untouched and read as far as it
//! can be, read-only. Reads take no lock (writes are atomic renames); the
//! exporter only ever *tries* the lock, so another process holding it delays
//! a write, never discovery. On a read-only state directory the baseline is
//! still read and exported; what is learnt stays in memory.
//!
//! An optional allowlist file names ports that are never *unexpected*:
//! one `proto/port` per line (`tcp/22`, `udp/53`), optionally followed by a
//! process name or glob (`tcp/8080 java*`); `#` starts a comment.
//!
//! [`rules`] holds what is expected and allowed; [`store`] the file.

mod rules;
mod store;

pub use rules::{Allowlist, Expected, from_ports};
pub use store::{
    Baseline, FILE, KEEP_BAD, LOCK_WAIT, ParseError, Recovered, UpdateError, parse, state_dir,
};
