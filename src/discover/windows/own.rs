//! Portwarden's own process and host, as the exporter reports them: its
//! `process_*` figures and the host's name, from Windows's process and
//! system information calls.

use windows_sys::Win32::System::ProcessStatus::{K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS};
use windows_sys::Win32::System::SystemInformation::{ComputerNameDnsHostname, GetComputerNameExW};
use windows_sys::Win32::System::Threading::GetCurrentProcess;

pub use super::Figures;

/// 100 ns intervals from 1601-01-01 to 1970-01-01.
const UNIX_EPOCH_AS_FILETIME: u64 = 116_444_736_000_000_000;

/// Reads our own figures; `None` when our own times cannot be read.
pub fn figures() -> Option<Figures> {
    // SAFETY: our own pseudo-handle needs no closing.
    let (created, kernel, user) =
        super::windows::win::process_times(unsafe { GetCurrentProcess() })?;
    let mut memory = PROCESS_MEMORY_COUNTERS {
        cb: std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32,
        ..Default::default()
    };
    // SAFETY: `memory` has its size set, as the call asks.
    let memory_ok =
        unsafe { K32GetProcessMemoryInfo(GetCurrentProcess(), &mut memory, memory.cb) } != 0;
    Some(Figures {
        cpu_seconds: (kernel + user) as f64 / 1e7,
        resident_bytes: if memory_ok {
            memory.WorkingSetSize as f64
        } else {
            0.0
        },
        // Committed private memory: what Windows charges us.
        virtual_bytes: if memory_ok {
            memory.PagefileUsage as f64
        } else {
            0.0
        },
        open_fds: super::fds::open_now() as f64,
        max_fds: super::fds::MAX_HANDLES as f64,
        start_time_seconds: created.saturating_sub(UNIX_EPOCH_AS_FILETIME) as f64 / 1e7,
    })
}

/// This host's DNS host name, or `localhost`.
pub fn host_name() -> String {
    let mut buf = vec![0u16; 256];
    let mut len = buf.len() as u32;
    // SAFETY: `buf` holds `len` u16s; the call writes at most that.
    let ok = unsafe { GetComputerNameExW(ComputerNameDnsHostname, buf.as_mut_ptr(), &mut len) };
    let name = match ok {
        0 => String::new(),
        _ => String::from_utf16_lossy(&buf[..len as usize]),
    };
    match name.is_empty() {
        true => "localhost".to_string(),
        false => name,
    }
}
