//! UDP: a datagram on a connected socket, and what comes back. UDP has no
//! handshake, so presence alone says little; this check asks. A reply means
//! `open`; an ICMP port unreachable — `ECONNREFUSED` on the connected
//! socket, `WSAECONNRESET` on Windows — means `closed`; silence until the timeout is `open|filtered`
//! (a server that ignores the payload and a firewall that drops it look the
//! same). At most one datagram is sent and one read, of at most
//! [`MAX_REPLY`] bytes.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Via;

/// The most of a reply that is read.
pub const MAX_REPLY: usize = 4096;

/// What a UDP check saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdpOutcome {
    /// A reply came: its first bytes.
    Open { reply: Vec<u8> },
    /// Port unreachable: nothing is bound there.
    Closed,
    /// No reply by the timeout: open, or filtered.
    OpenFiltered,
    /// No route to the address (network or host unreachable).
    Unreachable,
    /// Not tried for a lack of our own (descriptors, buffers, memory): no
    /// verdict on the port (see [`super::our_fault`]).
    Error(&'static str),
}

impl UdpOutcome {
    /// The class as it is exported: `open`, `closed`, `open|filtered`,
    /// `unreachable`, `error`.
    pub fn class(&self) -> &'static str {
        match self {
            UdpOutcome::Open { .. } => "open",
            UdpOutcome::Closed => "closed",
            UdpOutcome::OpenFiltered => "open|filtered",
            UdpOutcome::Unreachable => "unreachable",
            UdpOutcome::Error(_) => "error",
        }
    }
}

/// Sends `payload` (an empty datagram is a valid one) to `addr` from
/// inside `via`'s namespace and classifies the answer; ends by `timeout`.
/// Returns the outcome and the seconds it took.
pub async fn probe(
    addr: SocketAddr,
    via: &Via,
    payload: &[u8],
    timeout: Duration,
) -> (UdpOutcome, f64) {
    let started = Instant::now();
    let outcome = match tokio::time::timeout(timeout, ask(addr, via, payload)).await {
        Ok(outcome) => outcome,
        Err(_) => UdpOutcome::OpenFiltered,
    };
    (outcome, started.elapsed().as_secs_f64())
}

async fn ask(addr: SocketAddr, via: &Via, payload: &[u8]) -> UdpOutcome {
    let socket = match super::udp_socket(addr, via).await {
        Ok(socket) => socket,
        Err(e) => return classify(&e),
    };
    if let Err(e) = socket.send(payload).await {
        return classify(&e);
    }
    let mut buf = vec![0u8; MAX_REPLY];
    match socket.recv(&mut buf).await {
        Ok(n) => {
            buf.truncate(n);
            UdpOutcome::Open { reply: buf }
        }
        Err(e) => classify(&e),
    }
}

fn classify(e: &io::Error) -> UdpOutcome {
    if let Some(reason) = super::our_fault(e) {
        return UdpOutcome::Error(reason);
    }
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset => {
            UdpOutcome::Closed
        }
        _ => UdpOutcome::Unreachable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    fn check(addr: SocketAddr, payload: &[u8], timeout: Duration) -> (UdpOutcome, f64) {
        runtime().block_on(probe(addr, &Via::Here, payload, timeout))
    }

    #[test]
    fn an_echo_server_is_open_and_its_reply_is_read() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = server.local_addr().expect("addr");
        let echo = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let (n, from) = server.recv_from(&mut buf).expect("recv");
            server.send_to(&buf[..n], from).expect("send");
        });
        let (outcome, seconds) = check(addr, b"ping", Duration::from_secs(2));
        assert_eq!(
            outcome,
            UdpOutcome::Open {
                reply: b"ping".to_vec()
            }
        );
        assert_eq!(outcome.class(), "open");
        assert!(seconds < 2.0);
        echo.join().expect("echo");
    }

    #[test]
    fn a_port_nothing_is_bound_to_is_closed_at_once() {
        let gone = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = gone.local_addr().expect("addr");
        drop(gone);
        let (outcome, seconds) = check(addr, b"", Duration::from_secs(2));
        assert_eq!(outcome, UdpOutcome::Closed);
        assert!(seconds < 1.0, "ICMP on loopback is immediate: {seconds}");
    }

    #[test]
    fn a_silent_socket_is_open_or_filtered_after_the_timeout() {
        let silent = std::net::UdpSocket::bind("[::1]:0").expect("bind");
        let addr = silent.local_addr().expect("addr");
        let (outcome, seconds) = check(addr, b"", Duration::from_millis(300));
        assert_eq!(outcome, UdpOutcome::OpenFiltered);
        assert_eq!(outcome.class(), "open|filtered");
        assert!(seconds >= 0.29, "{seconds}");
        // The empty datagram arrived.
        let mut buf = [0u8; 8];
        silent
            .set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        assert_eq!(silent.recv(&mut buf).expect("datagram"), 0);
    }

    #[test]
    fn a_long_reply_is_cut_at_the_bound() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = server.local_addr().expect("addr");
        let big = std::thread::spawn(move || {
            let mut buf = [0u8; 16];
            let (_, from) = server.recv_from(&mut buf).expect("recv");
            server.send_to(&vec![7u8; 9000], from).expect("send");
        });
        let (outcome, _) = check(addr, b"x", Duration::from_secs(2));
        let UdpOutcome::Open { reply } = outcome else {
            panic!("open expected")
        };
        assert_eq!(reply.len(), MAX_REPLY);
        big.join().expect("server");
    }
}
