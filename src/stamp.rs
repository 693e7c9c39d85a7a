//! What tells a file changed — replaced (inode) or rewritten (mtime, size)
//! — for the files that are reloaded when they change (the web config, the
//! targets and modules files).

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    mtime_ns: i128,
    len: u64,
}

/// Each file's stamp now; `None` for one that cannot be read.
pub fn stamps(paths: &[PathBuf]) -> Vec<Option<Stamp>> {
    use std::os::unix::fs::MetadataExt;
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p).ok().map(|m| Stamp {
                dev: m.dev(),
                ino: m.ino(),
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                len: m.len(),
            })
        })
        .collect()
}
