//! hostsim: a busy host on one machine, for portwarden's tests and benchmarks.
//!
//! Forks `--procs` processes; each opens `--tcp` listening TCP and `--udp`
//! bound UDP sockets (round-robin over 127.0.0.1, 0.0.0.0, ::1 and ::, IPv6
//! ones v6-only) and `--fds` extra descriptors (/dev/null), then serves its
//! listeners from one poll loop according to their role:
//!
//! | role     | what the listener does                                        |
//! |----------|---------------------------------------------------------------|
//! | `http`   | answers every request `200 OK` (one read of up to 4 KiB, 1 s) |
//! | `hung`   | never accepts (backlog 1: full after two handshakes)          |
//! | `silent` | accepts and never writes (keeps the last 256 connections)     |
//! | `accept` | accepts and closes at once (`--accept`)                       |
//! | `tcp`    | listens and is left alone (backlog 128)                       |
//! | `udp`    | a bound UDP socket                                            |
//!
//! Of each process's TCP sockets the first `--http` are `http`, the next
//! `--hung` are `hung`, the next `--silent` are `silent`, the rest `accept`
//! (with `--accept`) or `tcp`. When every process is ready the ready file
//! is written (atomically): `{"parent", "children", "sockets": [{"pid",
//! "proto" (tcp, tcp6, udp, udp6), "addr", "port", "role"}]}`. It runs until
//! SIGTERM or SIGINT, then ends its processes; they also end if it dies.
//!
//! ```sh
//! cargo run --release --example hostsim -- --procs 500 --tcp 20 --udp 2 \
//!     --fds 200 --http 1 --hung 1 --accept --ready-file /tmp/ready.json
//! ```

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use rustix::net::{AddressFamily, SocketType, ipproto, sockopt};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(about = "Simulate a busy host: processes holding many sockets and descriptors")]
struct Args {
    /// Processes to fork.
    #[arg(long, default_value_t = 50)]
    procs: usize,
    /// Listening TCP sockets per process.
    #[arg(long, default_value_t = 10)]
    tcp: usize,
    /// Bound UDP sockets per process.
    #[arg(long, default_value_t = 1)]
    udp: usize,
    /// Extra descriptors (not sockets) per process.
    #[arg(long, default_value_t = 50)]
    fds: usize,
    /// Of the TCP sockets, how many answer HTTP.
    #[arg(long, default_value_t = 0)]
    http: usize,
    /// Of the TCP sockets, how many never accept.
    #[arg(long, default_value_t = 0)]
    hung: usize,
    /// Of the TCP sockets, how many accept and never write.
    #[arg(long, default_value_t = 0)]
    silent: usize,
    /// The other TCP sockets accept and close each connection.
    #[arg(long)]
    accept: bool,
    /// Where to write the list of sockets once all are open.
    #[arg(long)]
    ready_file: PathBuf,
    /// A cgroup directory (e.g. /sys/fs/cgroup/unified/hostsim.slice, as
    /// root) to put each process in a unit of its own below, as systemd
    /// would: `<dir>/hostsim-<i>.service`. Removed at the end.
    #[arg(long)]
    units: Option<PathBuf>,
}

/// Moves `pid` into `<dir>/hostsim-<i>.service`, made if missing.
fn place_in_unit(dir: &std::path::Path, i: usize, pid: i32) -> std::io::Result<()> {
    let unit = dir.join(format!("hostsim-{i}.service"));
    std::fs::create_dir_all(&unit)?;
    std::fs::write(unit.join("cgroup.procs"), pid.to_string())
}

/// Removes the units' cgroups once their processes are gone.
fn remove_units(dir: &std::path::Path, procs: usize) {
    for i in 0..procs {
        let _ = std::fs::remove_dir(dir.join(format!("hostsim-{i}.service")));
    }
    let _ = std::fs::remove_dir(dir);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Http,
    Hung,
    Silent,
    Accept,
    Tcp,
    Udp,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Http => "http",
            Role::Hung => "hung",
            Role::Silent => "silent",
            Role::Accept => "accept",
            Role::Tcp => "tcp",
            Role::Udp => "udp",
        }
    }

    fn of_tcp(j: usize, a: &Args) -> Role {
        if j < a.http {
            Role::Http
        } else if j < a.http + a.hung {
            Role::Hung
        } else if j < a.http + a.hung + a.silent {
            Role::Silent
        } else if a.accept {
            Role::Accept
        } else {
            Role::Tcp
        }
    }
}

const ADDRESSES: [&str; 4] = ["127.0.0.1", "0.0.0.0", "::1", "::"];
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

fn main() -> ExitCode {
    let args = Args::parse();
    // The parent waits for these with sigwait; children unblock them.
    let signals = signal_set(&[libc::SIGTERM, libc::SIGINT]);
    // SAFETY: sets this thread's signal mask from a set built above.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &signals, std::ptr::null_mut()) };

    let mut children = Vec::new();
    let mut sockets = Vec::new();
    for i in 0..args.procs {
        let (mut ours, theirs) = match UnixStream::pair() {
            Ok(pair) => pair,
            Err(e) => return fail(&children, &format!("socketpair: {e}")),
        };
        // SAFETY: the parent is single-threaded here; the child only runs
        // its own code and exits without returning.
        match unsafe { libc::fork() } {
            -1 => {
                let e = std::io::Error::last_os_error();
                return fail(&children, &format!("fork: {e}"));
            }
            0 => {
                drop(ours);
                // SAFETY: as above, the mask set before the fork.
                unsafe {
                    libc::pthread_sigmask(libc::SIG_UNBLOCK, &signals, std::ptr::null_mut());
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                }
                let code = match child(i, &args, theirs) {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("hostsim: process {i}: {e}");
                        1
                    }
                };
                std::process::exit(code);
            }
            pid => {
                drop(theirs);
                children.push(pid);
                if let Some(dir) = &args.units
                    && let Err(e) = place_in_unit(dir, i, pid)
                {
                    return fail(&children, &format!("{}: {e}", dir.display()));
                }
                let mut line = String::new();
                if ours.read_to_string(&mut line).is_err() || line.is_empty() {
                    return fail(&children, &format!("process {i} failed to start"));
                }
                match serde_json::from_str::<Vec<Value>>(&line) {
                    Ok(list) => sockets.extend(list),
                    Err(e) => return fail(&children, &format!("process {i}: {e}")),
                }
            }
        }
    }
    let ready = json!({"parent": std::process::id(), "children": children, "sockets": sockets});
    let tmp = args.ready_file.with_extension("tmp");
    let written = std::fs::write(&tmp, ready.to_string())
        .and_then(|()| std::fs::rename(&tmp, &args.ready_file));
    if let Err(e) = written {
        return fail(&children, &format!("{}: {e}", args.ready_file.display()));
    }
    let mut sig = 0;
    // SAFETY: waits on the blocked set; writes the signal number to `sig`.
    unsafe { libc::sigwait(&signals, &mut sig) };
    end(&children);
    if let Some(dir) = &args.units {
        remove_units(dir, args.procs);
    }
    ExitCode::SUCCESS
}

fn signal_set(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset uses it.
    unsafe {
        let mut set = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in signals {
            libc::sigaddset(&mut set, *s);
        }
        set
    }
}

fn end(children: &[i32]) {
    for &pid in children {
        // SAFETY: signals and reaps our own children.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    for &pid in children {
        // SAFETY: as above.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
}

fn fail(children: &[i32], what: &str) -> ExitCode {
    eprintln!("hostsim: {what}");
    end(children);
    ExitCode::FAILURE
}

/// One listener of a child process, and how it is served.
struct Listener {
    socket: TcpListener,
    role: Role,
}

/// An HTTP connection waiting for its request.
struct Request {
    stream: TcpStream,
    deadline: Instant,
    read: Vec<u8>,
}

fn child(idx: usize, args: &Args, mut report: UnixStream) -> std::io::Result<()> {
    let pid = std::process::id();
    let mut info = Vec::new();
    let mut listeners = Vec::new();
    let mut udp = Vec::new();
    for j in 0..args.tcp {
        let addr: IpAddr = ADDRESSES[(idx + j) % ADDRESSES.len()].parse().expect("ip");
        let role = Role::of_tcp(j, args);
        let fd = bound(addr, SocketType::STREAM)?;
        rustix::net::listen(&fd, if role == Role::Hung { 1 } else { 128 })?;
        let socket = TcpListener::from(fd);
        socket.set_nonblocking(true)?;
        info.push(describe(pid, "tcp", addr, socket.local_addr()?, role));
        listeners.push(Listener { socket, role });
    }
    for j in 0..args.udp {
        let addr: IpAddr = ADDRESSES[(idx + j) % ADDRESSES.len()].parse().expect("ip");
        let fd = bound(addr, SocketType::DGRAM)?;
        let local = rustix::net::getsockname(&fd)?;
        let local = SocketAddr::try_from(local).map_err(|_| std::io::Error::other("address"))?;
        info.push(describe(pid, "udp", addr, local, Role::Udp));
        udp.push(fd);
    }
    let extra: Vec<std::fs::File> = (0..args.fds)
        .map(|_| std::fs::File::open("/dev/null"))
        .collect::<Result<_, _>>()?;
    report.write_all(serde_json::to_string(&info)?.as_bytes())?;
    drop(report);
    serve(&listeners)?;
    drop((udp, extra));
    Ok(())
}

/// A socket bound to `addr` on a free port; IPv6 ones v6-only.
fn bound(addr: IpAddr, kind: SocketType) -> std::io::Result<OwnedFd> {
    let family = if addr.is_ipv6() {
        AddressFamily::INET6
    } else {
        AddressFamily::INET
    };
    let proto = if kind == SocketType::STREAM {
        ipproto::TCP
    } else {
        ipproto::UDP
    };
    let fd = rustix::net::socket(family, kind, Some(proto))?;
    if addr.is_ipv6() {
        sockopt::set_ipv6_v6only(&fd, true)?;
    }
    if kind == SocketType::STREAM {
        sockopt::set_socket_reuseaddr(&fd, true)?;
    }
    rustix::net::bind(&fd, &SocketAddr::new(addr, 0))?;
    Ok(fd)
}

fn describe(pid: u32, proto: &str, addr: IpAddr, local: SocketAddr, role: Role) -> Value {
    let proto = if addr.is_ipv6() {
        format!("{proto}6")
    } else {
        proto.to_string()
    };
    json!({"pid": pid, "proto": proto, "addr": addr.to_string(), "port": local.port(), "role": role.name()})
}

/// Serves the listeners forever from one poll loop.
fn serve(listeners: &[Listener]) -> std::io::Result<()> {
    let served: Vec<&Listener> = listeners
        .iter()
        .filter(|l| matches!(l.role, Role::Http | Role::Silent | Role::Accept))
        .collect();
    let mut requests: Vec<Request> = Vec::new();
    let mut silent: std::collections::VecDeque<TcpStream> = Default::default();
    loop {
        let mut fds: Vec<libc::pollfd> = served
            .iter()
            .map(|l| l.socket.as_fd().as_raw_fd())
            .chain(requests.iter().map(|r| r.stream.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid array of pollfd of the length passed.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for (l, fd) in served.iter().zip(&fds) {
            if fd.revents == 0 {
                continue;
            }
            while let Ok((stream, _)) = l.socket.accept() {
                match l.role {
                    Role::Http => {
                        stream.set_nonblocking(true)?;
                        requests.push(Request {
                            stream,
                            deadline: Instant::now() + Duration::from_secs(1),
                            read: Vec::new(),
                        });
                    }
                    Role::Silent => {
                        silent.push_back(stream);
                        if silent.len() > 256 {
                            silent.pop_front();
                        }
                    }
                    _ => drop(stream),
                }
            }
        }
        let ready: Vec<bool> = fds[served.len()..]
            .iter()
            .map(|fd| fd.revents != 0)
            .collect();
        let now = Instant::now();
        let mut i = 0;
        requests.retain_mut(|r| {
            let readable = ready.get(i).copied().unwrap_or(false);
            i += 1;
            if readable {
                let mut buf = [0u8; 4096];
                match r.stream.read(&mut buf) {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => r.read.extend_from_slice(&buf[..n]),
                }
                if r.read.windows(4).any(|w| w == b"\r\n\r\n") || r.read.len() >= 4096 {
                    let _ = r.stream.set_nonblocking(false);
                    let _ = r.stream.set_write_timeout(Some(Duration::from_secs(1)));
                    let _ = r.stream.write_all(RESPONSE);
                    return false;
                }
            }
            r.deadline > now
        });
    }
}
