//! What the rest of the program asks of the operating system besides
//! discovery and checks: a file opened for appending, readable by its
//! owner's group alone; an exclusive lock tried without waiting; what
//! tells a file changed; who owns a file and who may write it; the
//! terminal's width. Linux's answers; another platform's go beside them,
//! so that the engine, the server and the CLI build unchanged.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Opens `path` for appending, made with mode 0640 when it is new.
pub fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// Takes an exclusive lock on `file` without waiting: `false` when another
/// process holds it. Released when the file is closed.
pub fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    match rustix::fs::flock(
        file.as_fd(),
        rustix::fs::FlockOperation::NonBlockingLockExclusive,
    ) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// What tells a file changed: replaced (device and inode), rewritten
/// (mtime, size) or given another owner or mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    mtime_ns: i128,
    len: u64,
    uid: u32,
    mode: u32,
}

/// A file's stamp from its metadata.
pub fn stamp(m: &Metadata) -> Stamp {
    Stamp {
        dev: m.dev(),
        ino: m.ino(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        len: m.len(),
        uid: m.uid(),
        mode: m.mode(),
    }
}

/// Who owns a file and who may write it: its owner's uid and its mode;
/// `None` where the OS says it otherwise (Windows's ACLs).
pub fn owner_and_mode(m: &Metadata) -> Option<(u32, u32)> {
    Some((m.uid(), m.mode()))
}

/// Our effective uid.
pub fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Makes standard error `file` from now on (a panic's message included).
pub fn stderr_to(file: &File) -> io::Result<()> {
    Ok(rustix::stdio::dup2_stderr(file)?)
}

/// The system's state directory.
pub fn system_state_dir() -> std::path::PathBuf {
    "/var/lib/portwarden".into()
}

/// The user's state directory: `$XDG_STATE_HOME/portwarden`, or
/// `~/.local/state/portwarden`.
pub fn user_state_dir() -> Option<std::path::PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))?;
    Some(base.join("portwarden"))
}

/// Standard output's terminal width, if it is a terminal.
pub fn terminal_width() -> Option<u16> {
    rustix::termios::tcgetwinsize(std::io::stdout())
        .ok()
        .map(|size| size.ws_col)
}

/// Runs `handler` on `signal` from now on (`SA_RESTART`, nothing
/// blocked). The handler must only store to atomics: it runs between any
/// two instructions of the process.
fn on_signal(signal: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: the sigaction struct is zeroed, then its handler and mask
    // set; the handler is async-signal-safe by this function's contract.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        action.sa_flags = libc::SA_RESTART;
        libc::sigaction(signal, &action, std::ptr::null_mut());
    }
}

/// A hang-up (SIGHUP) noted before anything listened for it.
static EARLY_HANGUP: AtomicBool = AtomicBool::new(false);
/// Asked to stop (SIGINT, SIGTERM), for a command that ends between steps.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn note_hangup(_: libc::c_int) {
    EARLY_HANGUP.store(true, Relaxed);
}

extern "C" fn note_stop(_: libc::c_int) {
    STOP.store(true, Relaxed);
}

/// Takes hang-ups (SIGHUP, `systemctl reload`) from now on: only noted
/// until [`Hangups`] listens ([`early_hangup`] tells whether one came).
pub fn hold_hangups() {
    on_signal(libc::SIGHUP, note_hangup);
}

/// Whether a hang-up came before [`Hangups`] listened (and forgets it).
pub fn early_hangup() -> bool {
    EARLY_HANGUP.swap(false, Relaxed)
}

/// Gives hang-ups their default action back (a hung-up terminal ends a
/// one-shot command, as it ends any command).
pub fn release_hangups() {
    // SAFETY: resets one signal's disposition to the default.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_DFL);
    }
}

/// Takes SIGINT and SIGTERM from now on: only noted ([`stop_asked`]).
pub fn note_stops() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        on_signal(signal, note_stop);
    }
}

/// Whether SIGINT or SIGTERM came since [`note_stops`].
pub fn stop_asked() -> bool {
    STOP.load(Relaxed)
}

/// Hang-ups as they come (each listener hears every one).
pub struct Hangups(Option<tokio::signal::unix::Signal>);

impl Hangups {
    /// Listens from now on; never hears one if the signal cannot be taken.
    pub fn listen() -> Hangups {
        use tokio::signal::unix::{SignalKind, signal};
        Hangups(signal(SignalKind::hangup()).ok())
    }

    /// The next hang-up.
    pub async fn recv(&mut self) {
        match self.0.as_mut() {
            Some(h) => {
                if h.recv().await.is_none() {
                    std::future::pending::<()>().await
                }
            }
            None => std::future::pending().await,
        }
    }
}

/// Resolves when the service manager asks us to stop (SIGTERM).
pub async fn terminated() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending::<()>().await,
    }
}

/// Makes the child `command` starts the leader of a process group of its
/// own, so that [`kill_group`] ends it with everything it started.
pub fn own_group(command: &mut tokio::process::Command) {
    command.process_group(0);
}

/// Kills the process group `leader` leads (see [`own_group`]).
pub fn kill_group(leader: u32) {
    if let Some(group) = i32::try_from(leader)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
}

/// A datagram socket that sends to local sockets by path (journald's
/// native protocol).
#[derive(Debug)]
pub struct LocalDatagrams(std::os::unix::net::UnixDatagram);

impl LocalDatagrams {
    pub fn new() -> io::Result<LocalDatagrams> {
        std::os::unix::net::UnixDatagram::unbound().map(LocalDatagrams)
    }

    /// Sends one datagram to the socket at `path`.
    pub fn send_to(&self, datagram: &[u8], path: &Path) -> io::Result<usize> {
        self.0.send_to(datagram, path)
    }
}

/// Windows services are Windows's: here the systemd unit runs the
/// exporter (deploy/systemd).
pub mod service {
    use std::ffi::OsString;
    use std::io;
    use std::path::Path;

    pub use crate::discover::service::{STOP_WAIT_HINT, Serve};

    fn windows_only() -> io::Error {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "Windows services are Windows's; on Linux the systemd unit runs the exporter (deploy/systemd/portwarden.service)",
        )
    }

    pub fn install(_: &str, _: &Path, _: &[OsString], _: bool) -> io::Result<()> {
        Err(windows_only())
    }

    pub fn uninstall(_: &str) -> io::Result<()> {
        Err(windows_only())
    }

    pub fn run(_: &str, _: Serve) -> io::Result<()> {
        Err(windows_only())
    }
}
