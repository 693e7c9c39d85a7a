//! The Win32 calls discovery makes, each wrapped once: buffers sized by
//! the call's own answer, every handle closed on drop, every failure an
//! `io::Error` or `None` (a process that exits or may not be opened is
//! normal, never a panic).

use std::collections::HashMap;
use std::ffi::c_void;
use std::io;
use std::ptr::{null, null_mut};

use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_INSUFFICIENT_BUFFER, ERROR_MORE_DATA, ERROR_NOT_SUPPORTED, FILETIME, HANDLE,
    INVALID_HANDLE_VALUE, STILL_ACTIVE,
};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    GetExtendedTcpTable, GetExtendedUdpTable, TCP_TABLE_OWNER_PID_LISTENER, UDP_TABLE_OWNER_PID,
};
use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6};
use windows_sys::Win32::Security::{
    GetTokenInformation, LookupAccountSidW, SID_NAME_USE, TOKEN_QUERY, TOKEN_USER, TokenUser,
};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, PROCESSENTRY32W, Process32FirstW, Process32NextW, TH32CS_SNAPPROCESS,
};
use windows_sys::Win32::System::Services::{
    CloseServiceHandle, ENUM_SERVICE_STATUS_PROCESSW, EnumServicesStatusExW, OpenSCManagerW,
    SC_ENUM_PROCESS_INFO, SC_MANAGER_ENUMERATE_SERVICE, SERVICE_ACTIVE, SERVICE_WIN32,
};
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, GetProcessTimes, OpenProcess, OpenProcessToken, PROCESS_NAME_WIN32,
    PROCESS_QUERY_LIMITED_INFORMATION, QueryFullProcessImageNameW,
};

use super::super::tables::Table;

/// Text from a wide string up to its first NUL (lossy: a name is shown,
/// never trusted).
pub fn from_wide(w: &[u16]) -> String {
    let end = w.iter().position(|&c| c == 0).unwrap_or(w.len());
    String::from_utf16_lossy(&w[..end])
}

/// A NUL-terminated wide string read through a pointer.
///
/// # Safety
/// `p` is null or points at a NUL-terminated UTF-16 string.
unsafe fn from_wide_ptr(p: *const u16) -> String {
    if p.is_null() {
        return String::new();
    }
    let mut len = 0;
    // SAFETY: the string is NUL-terminated (this function's contract).
    while unsafe { *p.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: `len` elements were just read.
    from_wide(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A handle closed when dropped.
#[derive(Debug)]
struct Owned(HANDLE);

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: the handle is ours, open, and closed only here.
        unsafe { CloseHandle(self.0) };
    }
}

/// One owner-pid table, as the IP Helper fills it: asked for its size,
/// then filled; asked again when it grew in between.
pub fn table(table: Table) -> io::Result<Vec<u8>> {
    let family = match table {
        Table::Tcp4 | Table::Udp4 => AF_INET,
        Table::Tcp6 | Table::Udp6 => AF_INET6,
    } as u32;
    // u32s: the rows are DWORDs, so the buffer is aligned as they are.
    let mut buf: Vec<u32> = Vec::new();
    for _ in 0..8 {
        let mut size = (buf.len() * 4) as u32;
        let out = buf.as_mut_ptr().cast::<c_void>();
        let rc = match table {
            // SAFETY: `out` holds `size` bytes (none when empty: the call
            // then only writes the size it needs).
            Table::Tcp4 | Table::Tcp6 => unsafe {
                GetExtendedTcpTable(out, &mut size, 0, family, TCP_TABLE_OWNER_PID_LISTENER, 0)
            },
            // SAFETY: as above.
            Table::Udp4 | Table::Udp6 => unsafe {
                GetExtendedUdpTable(out, &mut size, 0, family, UDP_TABLE_OWNER_PID, 0)
            },
        };
        match rc {
            0 => {
                let bytes = (size as usize).min(buf.len() * 4);
                return Ok(buf
                    .iter()
                    .flat_map(|d| d.to_ne_bytes())
                    .take(bytes)
                    .collect());
            }
            ERROR_INSUFFICIENT_BUFFER => {
                // Room for a few more rows that may open meanwhile.
                buf = vec![0; (size as usize).div_ceil(4) + 64];
            }
            // No such family here (IPv6 disabled): no sockets of it.
            ERROR_NOT_SUPPORTED => return Ok(0u32.to_ne_bytes().to_vec()),
            rc => return Err(io::Error::from_raw_os_error(rc as i32)),
        }
    }
    Err(io::Error::other("the table kept growing while it was read"))
}

/// A process as the process list shows it: every process, whoever owns it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub ppid: u32,
    pub image: String,
}

/// Every process now, by pid (`CreateToolhelp32Snapshot`).
pub fn processes() -> HashMap<u32, Listed> {
    let mut out = HashMap::new();
    // SAFETY: no pointers passed; the result is checked before use.
    let snap = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
    if snap == INVALID_HANDLE_VALUE || snap.is_null() {
        return out;
    }
    let snap = Owned(snap);
    let mut entry = PROCESSENTRY32W {
        dwSize: std::mem::size_of::<PROCESSENTRY32W>() as u32,
        ..Default::default()
    };
    // SAFETY: `entry` is a PROCESSENTRY32W with its size set, as the call asks.
    let mut more = unsafe { Process32FirstW(snap.0, &mut entry) } != 0;
    while more {
        out.insert(
            entry.th32ProcessID,
            Listed {
                ppid: entry.th32ParentProcessID,
                image: from_wide(&entry.szExeFile),
            },
        );
        // SAFETY: as for the first.
        more = unsafe { Process32NextW(snap.0, &mut entry) } != 0;
    }
    out
}

fn filetime(t: FILETIME) -> u64 {
    (u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime)
}

/// A process's creation, kernel and user times, in 100 ns (creation since
/// 1601).
pub fn process_times(process: HANDLE) -> Option<(u64, u64, u64)> {
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: four FILETIMEs of ours, written by the call; the handle is
    // open (the caller's, or our own pseudo-handle).
    let ok = unsafe { GetProcessTimes(process, &mut created, &mut exited, &mut kernel, &mut user) };
    (ok != 0).then(|| (filetime(created), filetime(kernel), filetime(user)))
}

/// A process opened for limited queries (what any user may ask of most
/// processes; not of protected ones, nor of other users' without rights).
#[derive(Debug)]
pub struct Opened(Owned);

impl Opened {
    pub fn new(pid: u32) -> Option<Opened> {
        if pid == 0 {
            return None;
        }
        // SAFETY: no pointers; a null handle is a refusal.
        let h = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
        (!h.is_null()).then(|| Opened(Owned(h)))
    }

    /// Creation time, in 100 ns since 1601.
    pub fn start_time(&self) -> Option<u64> {
        process_times(self.0.0).map(|t| t.0).filter(|&t| t != 0)
    }

    /// Whether it has not exited.
    pub fn running(&self) -> bool {
        let mut code = 0u32;
        // SAFETY: one u32 of ours, written by the call.
        let ok = unsafe { GetExitCodeProcess(self.0.0, &mut code) } != 0;
        ok && code == STILL_ACTIVE as u32
    }

    /// The image's full Win32 path.
    pub fn image_path(&self) -> Option<String> {
        let mut buf = vec![0u16; 1024];
        for _ in 0..2 {
            let mut len = buf.len() as u32;
            // SAFETY: `buf` holds `len` u16s; the call writes at most that.
            let ok = unsafe {
                QueryFullProcessImageNameW(self.0.0, PROCESS_NAME_WIN32, buf.as_mut_ptr(), &mut len)
            };
            if ok != 0 {
                return Some(from_wide(&buf[..len as usize]));
            }
            // Long paths (\\?\): once more with the most a path may be.
            buf = vec![0u16; 32_768];
        }
        None
    }

    /// `DOMAIN\user` of its token.
    pub fn user(&self, accounts: &mut Accounts) -> Option<String> {
        let mut token = null_mut();
        // SAFETY: `token` is written by the call when it succeeds.
        if unsafe { OpenProcessToken(self.0.0, TOKEN_QUERY, &mut token) } == 0 {
            return None;
        }
        let token = Owned(token);
        // TOKEN_USER and the SID it points into, aligned as pointers are.
        let mut buf = vec![0usize; 16];
        let mut len = 0u32;
        // SAFETY: `buf` holds the length given; the call writes at most that.
        let ok = unsafe {
            GetTokenInformation(
                token.0,
                TokenUser,
                buf.as_mut_ptr().cast(),
                (buf.len() * std::mem::size_of::<usize>()) as u32,
                &mut len,
            )
        };
        if ok == 0 {
            return None;
        }
        // SAFETY: the call wrote a TOKEN_USER at the buffer's start.
        let sid = unsafe { (*buf.as_ptr().cast::<TOKEN_USER>()).User.Sid };
        accounts.name(sid)
    }
}

/// Account names by SID, each looked up once.
#[derive(Debug, Default)]
pub struct Accounts(HashMap<Vec<u8>, Option<String>>);

impl Accounts {
    fn name(&mut self, sid: *mut c_void) -> Option<String> {
        // A SID: revision, sub-authority count, 6 bytes of authority, then
        // 4 bytes per sub-authority.
        // SAFETY: `sid` points at a valid SID (from the token just read).
        let key = unsafe {
            let count = *sid.cast::<u8>().add(1) as usize;
            std::slice::from_raw_parts(sid.cast::<u8>(), 8 + 4 * count).to_vec()
        };
        if let Some(known) = self.0.get(&key) {
            return known.clone();
        }
        let mut name = vec![0u16; 256];
        let mut domain = vec![0u16; 256];
        let (mut name_len, mut domain_len) = (name.len() as u32, domain.len() as u32);
        let mut kind: SID_NAME_USE = 0;
        // SAFETY: both buffers hold the lengths given.
        let ok = unsafe {
            LookupAccountSidW(
                null(),
                sid,
                name.as_mut_ptr(),
                &mut name_len,
                domain.as_mut_ptr(),
                &mut domain_len,
                &mut kind,
            )
        };
        let found = (ok != 0).then(|| {
            let (name, domain) = (from_wide(&name), from_wide(&domain));
            match domain.is_empty() {
                true => name,
                false => format!("{domain}\\{name}"),
            }
        });
        self.0.insert(key, found.clone());
        found
    }
}

/// Running services by the pid they run in (a shared svchost runs
/// several), from the service control manager; none when it cannot be
/// asked.
pub fn services() -> HashMap<u32, Vec<String>> {
    let mut out: HashMap<u32, Vec<String>> = HashMap::new();
    // SAFETY: null machine and database: this host's active database.
    let scm = unsafe { OpenSCManagerW(null(), null(), SC_MANAGER_ENUMERATE_SERVICE) };
    if scm.is_null() {
        return out;
    }
    struct Scm(*mut c_void);
    impl Drop for Scm {
        fn drop(&mut self) {
            // SAFETY: ours, open, closed only here.
            unsafe { CloseServiceHandle(self.0) };
        }
    }
    let scm = Scm(scm);
    let mut buf: Vec<u64> = vec![0; 8192];
    let mut resume = 0u32;
    loop {
        let (mut needed, mut returned) = (0u32, 0u32);
        // SAFETY: `buf` holds the byte length given; the call writes at
        // most that, and `resume` carries on from the last call.
        let ok = unsafe {
            EnumServicesStatusExW(
                scm.0,
                SC_ENUM_PROCESS_INFO,
                SERVICE_WIN32,
                SERVICE_ACTIVE,
                buf.as_mut_ptr().cast(),
                (buf.len() * 8) as u32,
                &mut needed,
                &mut returned,
                &mut resume,
                null(),
            )
        };
        let more = ok == 0
            && std::io::Error::last_os_error().raw_os_error() == Some(ERROR_MORE_DATA as i32);
        if ok == 0 && !more {
            break;
        }
        let entries = buf.as_ptr().cast::<ENUM_SERVICE_STATUS_PROCESSW>();
        for i in 0..returned as usize {
            // SAFETY: the call wrote `returned` entries at the buffer's
            // start; their names point into the same buffer.
            let (pid, name) = unsafe {
                let e = &*entries.add(i);
                (
                    e.ServiceStatusProcess.dwProcessId,
                    from_wide_ptr(e.lpServiceName),
                )
            };
            if pid != 0 {
                out.entry(pid).or_default().push(name);
            }
        }
        if !more {
            break;
        }
        if needed as usize > buf.len() * 8 {
            buf = vec![0; (needed as usize).div_ceil(8)];
        }
    }
    for names in out.values_mut() {
        names.sort();
    }
    out
}
