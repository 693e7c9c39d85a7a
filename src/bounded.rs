//! A file of ours that grows by appends and stays bounded: past its bound
//! it is set aside as `<name>.1` (the one before dropped) and begun again,
//! so the two hold at most twice the bound. Each append is written whole
//! into one file: a line is never split between the two. Used by the
//! exporter's record of changes (`events.jsonl`) and a Windows service's
//! log (`portwarden.log`).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Called with the file begun again after a set-aside (to point the
/// process's standard error at it, say).
pub type Reopened = fn(&File) -> io::Result<()>;

/// The open file.
#[derive(Debug)]
pub struct Bounded {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
    reopened: Option<Reopened>,
}

impl Bounded {
    /// Opens (or makes) `path` for appending, kept under `max` bytes (an
    /// append larger than that alone is written whole).
    pub fn open(path: &Path, max: u64) -> io::Result<Bounded> {
        let file = crate::discover::os::open_append(path)?;
        let size = file.metadata()?.len();
        Ok(Bounded {
            path: path.to_path_buf(),
            file,
            size,
            max,
            reopened: None,
        })
    }

    /// Calls `hook` with each file begun again after a set-aside.
    pub fn on_reopen(mut self, hook: Reopened) -> Bounded {
        self.reopened = Some(hook);
        self
    }

    /// The file written to now.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The set-aside file's path: `<path>.1`.
    pub fn set_aside(path: &Path) -> PathBuf {
        let mut old = path.to_path_buf().into_os_string();
        old.push(".1");
        PathBuf::from(old)
    }

    /// Appends `bytes` whole; first sets the file aside when they would
    /// take it past the bound. When the file cannot be set aside or begun
    /// again (the directory made read-only, a handle open elsewhere), the
    /// append goes to the file as it is, and the set-aside is tried again
    /// a bound later: a record kept past its bound is better than one lost.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.size > 0 && self.size + bytes.len() as u64 > self.max {
            // Begun again, or (that failed) counted afresh: tried again a
            // bound later.
            let _ = self.begin_again();
            self.size = 0;
        }
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Sets the file aside and opens a new one.
    fn begin_again(&mut self) -> io::Result<()> {
        let aside = Bounded::set_aside(&self.path);
        std::fs::rename(&self.path, &aside)?;
        match crate::discover::os::open_append(&self.path) {
            Ok(file) => self.file = file,
            Err(e) => {
                // Back where it was: the handle still open writes there.
                let _ = std::fs::rename(&aside, &self.path);
                return Err(e);
            }
        }
        if let Some(hook) = self.reopened {
            hook(&self.file)?;
        }
        Ok(())
    }
}

/// For a logger that writes each record in one call (tracing's formatter
/// does): a record is never split between the two files.
impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.append(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_aside_past_the_bound_with_every_write_whole_and_the_hook_told() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static REOPENED: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!("pw-bounded-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("some.log");
        std::fs::write(&path, "before\n").expect("an older log");
        let mut b = Bounded::open(&path, 100).expect("open").on_reopen(|_| {
            REOPENED.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        for i in 0..30 {
            // A record in one write, as tracing's formatter writes it.
            b.write_all(format!("line {i:02} of the log\n").as_bytes())
                .expect("write");
        }
        let now = std::fs::read_to_string(&path).expect("now");
        let old = std::fs::read_to_string(Bounded::set_aside(&path)).expect("set aside");
        assert!(now.len() <= 100 && old.len() <= 100, "{now:?} {old:?}");
        assert!(now.ends_with("line 29 of the log\n"), "{now:?}");
        // Whole lines in each, in order, the last of the one set aside
        // just before the first of the new.
        let numbers = |s: &str| -> Vec<u32> {
            s.lines()
                .map(|l| l[5..7].parse().expect("a whole line"))
                .collect()
        };
        let (a, b) = (numbers(&old), numbers(&now));
        assert_eq!(a.last().map(|n| n + 1), b.first().copied());
        // 19-byte lines under 100 bytes: 4 after the older 7 bytes, then
        // 5 a file — set aside before lines 4, 9, 14, 19, 24 and 29.
        assert_eq!(REOPENED.load(Ordering::SeqCst), 6);
        // Larger than the bound alone: written whole.
        let mut big = Bounded::open(&dir.join("big.log"), 10).expect("open");
        big.append(&[b'x'; 50]).expect("append");
        assert_eq!(
            std::fs::metadata(dir.join("big.log")).expect("big").len(),
            50
        );
        std::fs::remove_dir_all(&dir).expect("clean");
    }
}
