//! Our own handles, a budget (see [`super::budget`]): on Windows a socket is
//! a handle, and a process may hold about 16 million.

use windows_sys::Win32::System::Threading::{GetCurrentProcess, GetProcessHandleCount};

pub use super::budget::{RESERVE, check_budget};

/// The most handles a process may hold (2^24): there is no soft limit to raise.
pub const MAX_HANDLES: u64 = 1 << 24;

/// The limit in force: Windows has no soft limit, only the handle table's size.
pub fn raise_limit() -> u64 {
    MAX_HANDLES
}

/// Handles this process has open now.
pub fn open_now() -> usize {
    let mut count = 0u32;
    // SAFETY: the pseudo-handle of our own process needs no closing; one
    // u32 of ours is written.
    unsafe { GetProcessHandleCount(GetCurrentProcess(), &mut count) };
    count as usize
}
