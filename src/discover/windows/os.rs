//! What the rest of the program asks of the operating system besides
//! discovery and checks — Windows's answers (Linux's are in `os.rs` beside
//! `windows/`): files appended and locked, what tells a file changed, the
//! console's width, Ctrl+C and the service manager's stop. Windows has no
//! hang-up signal (reloads come by `POST /-/reload`), no file modes (who
//! may write a file is its ACL) and no process groups of Unix's kind.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::windows::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use windows_sys::Win32::Foundation::CloseHandle;
use windows_sys::Win32::System::Console::{
    CONSOLE_SCREEN_BUFFER_INFO, GetConsoleScreenBufferInfo, GetStdHandle, STD_OUTPUT_HANDLE,
    SetConsoleCtrlHandler,
};
use windows_sys::Win32::System::Threading::{OpenProcess, PROCESS_TERMINATE, TerminateProcess};

pub use super::windows::service;

/// Opens `path` for appending, made when it is new (with its directory's
/// inherited ACL).
pub fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Takes an exclusive lock on `file` without waiting: `false` when another
/// process holds it. Released when the file is closed.
pub fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// What tells a file changed: created anew, rewritten (last write, size)
/// or given other attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    created: u64,
    written: u64,
    len: u64,
    attributes: u32,
}

/// A file's stamp from its metadata.
pub fn stamp(m: &Metadata) -> Stamp {
    Stamp {
        created: m.creation_time(),
        written: m.last_write_time(),
        len: m.file_size(),
        attributes: m.file_attributes(),
    }
}

/// Who owns a file and who may write it is its ACL here: not told.
pub fn owner_and_mode(_: &Metadata) -> Option<(u32, u32)> {
    None
}

/// No uids on Windows.
pub fn effective_uid() -> u32 {
    0
}

/// Makes standard error `file` from now on (a panic's message included):
/// a service has none of its own.
///
/// The handle stays open for the life of the process, and one set before
/// by a log begun afresh is not closed: another thread may have just read
/// it to write a panic's message, and a closed handle's number may name
/// another file or socket a moment later — an open handle per 10 MiB of
/// log is the cheaper fault.
pub fn stderr_to(file: &File) -> io::Result<()> {
    use std::os::windows::io::IntoRawHandle;
    use windows_sys::Win32::System::Console::{STD_ERROR_HANDLE, SetStdHandle};
    let handle = file.try_clone()?.into_raw_handle();
    // SAFETY: an open handle of ours, never closed.
    match unsafe { SetStdHandle(STD_ERROR_HANDLE, handle) } {
        0 => Err(io::Error::last_os_error()),
        _ => Ok(()),
    }
}

/// The system's state directory: `%ProgramData%\portwarden`.
pub fn system_state_dir() -> std::path::PathBuf {
    let base = std::env::var_os("ProgramData")
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| r"C:\ProgramData".into());
    base.join("portwarden")
}

/// The user's state directory: `%LOCALAPPDATA%\portwarden`.
pub fn user_state_dir() -> Option<std::path::PathBuf> {
    let base = std::env::var_os("LOCALAPPDATA").map(std::path::PathBuf::from)?;
    Some(base.join("portwarden"))
}

/// The console's width, when standard output is one.
pub fn terminal_width() -> Option<u16> {
    let mut info = CONSOLE_SCREEN_BUFFER_INFO::default();
    // SAFETY: the standard handle needs no closing; `info` is ours.
    let ok = unsafe { GetConsoleScreenBufferInfo(GetStdHandle(STD_OUTPUT_HANDLE), &mut info) };
    let width = i32::from(info.srWindow.Right) - i32::from(info.srWindow.Left) + 1;
    (ok != 0 && width > 0).then(|| u16::try_from(width).unwrap_or(u16::MAX))
}

/// No hang-ups on Windows: nothing to hold.
pub fn hold_hangups() {}

/// No hang-ups on Windows: none came.
pub fn early_hangup() -> bool {
    false
}

/// No hang-ups on Windows: nothing to release.
pub fn release_hangups() {}

/// Asked to stop (Ctrl+C, Ctrl+Break, the console closing, the service
/// manager), for a command that ends between steps and for [`terminated`].
static STOP: AtomicBool = AtomicBool::new(false);
static STOPPED: tokio::sync::Notify = tokio::sync::Notify::const_new();

unsafe extern "system" fn note_stop(_: u32) -> windows_sys::core::BOOL {
    STOP.store(true, Relaxed);
    1
}

/// Takes Ctrl+C and Ctrl+Break from now on: only noted ([`stop_asked`]).
pub fn note_stops() {
    // SAFETY: the handler only stores to an atomic.
    unsafe { SetConsoleCtrlHandler(Some(note_stop), 1) };
}

/// Whether a stop was asked since [`note_stops`].
pub fn stop_asked() -> bool {
    STOP.load(Relaxed)
}

/// Asks [`terminated`] to resolve: the service manager's stop or shutdown.
pub fn request_stop() {
    STOP.store(true, Relaxed);
    STOPPED.notify_waiters();
    STOPPED.notify_one();
}

/// Hang-ups: none ever come on Windows.
pub struct Hangups;

impl Hangups {
    pub fn listen() -> Hangups {
        Hangups
    }

    /// Never resolves.
    pub async fn recv(&mut self) {
        std::future::pending::<()>().await
    }
}

/// Resolves when asked to stop: by the service manager (stop, shutdown),
/// or at the console (Ctrl+C, Ctrl+Break, closed, logoff, shutdown).
pub async fn terminated() {
    use std::future::pending;
    use tokio::signal::windows::{ctrl_break, ctrl_close, ctrl_shutdown};
    if STOP.load(Relaxed) {
        return;
    }
    // A console event that cannot be listened for never comes.
    let brk = async {
        match ctrl_break() {
            Ok(mut s) => s.recv().await,
            Err(_) => pending().await,
        }
    };
    let close = async {
        match ctrl_close() {
            Ok(mut s) => s.recv().await,
            Err(_) => pending().await,
        }
    };
    let shutdown = async {
        match ctrl_shutdown() {
            Ok(mut s) => s.recv().await,
            Err(_) => pending().await,
        }
    };
    tokio::select! {
        _ = STOPPED.notified() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = brk => {}
        _ = close => {}
        _ = shutdown => {}
    }
}

/// Starts the child `command` starts in a process group of its own (Ctrl+C
/// at our console does not reach it; [`kill_group`] ends it).
pub fn own_group(command: &mut tokio::process::Command) {
    /// `CREATE_NEW_PROCESS_GROUP`.
    const NEW_GROUP: u32 = 0x200;
    command.creation_flags(NEW_GROUP);
}

/// Ends the process `leader` (Windows has no group to signal).
pub fn kill_group(leader: u32) {
    // SAFETY: no pointers; a null handle is a refusal, and an open one is
    // closed here.
    unsafe {
        let h = OpenProcess(PROCESS_TERMINATE, 0, leader);
        if !h.is_null() {
            TerminateProcess(h, 1);
            CloseHandle(h);
        }
    }
}

/// journald's socket is Linux's: never made here.
#[derive(Debug)]
pub struct LocalDatagrams;

impl LocalDatagrams {
    pub fn new() -> io::Result<LocalDatagrams> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "journald's socket is a Linux interface",
        ))
    }

    pub fn send_to(&self, _: &[u8], _: &Path) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "journald's socket is a Linux interface",
        ))
    }
}
