//! TCP liveness: a connect, timed, then closed without sending a byte.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::Via;

/// What one TCP check saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TcpOutcome {
    pub alive: bool,
    /// Connect time of the successful attempt, else the time spent.
    pub seconds: f64,
    /// The address that answered.
    pub answered: Option<SocketAddr>,
    /// We may not enter the port's namespace: nothing was checked.
    pub unsupported: bool,
    /// Not alive, but only because we could not try (see
    /// [`super::our_fault`]): no verdict on the port.
    pub error: Option<&'static str>,
}

/// Connects to `targets` in order, at most `parallel` at once, until one
/// answers; the whole check ends by `timeout`.
pub async fn probe(
    targets: &[SocketAddr],
    via: &Via,
    timeout: Duration,
    parallel: usize,
) -> TcpOutcome {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pending = targets.iter().copied();
    let mut running = JoinSet::new();
    let mut denied = 0;
    let mut error = None;
    let spawn = |set: &mut JoinSet<_>, addr: SocketAddr| {
        let via = via.clone();
        set.spawn(async move {
            // The socket first (entering a namespace is ours to wait for),
            // then the connect, timed and within the port's deadline.
            let socket = super::tcp_socket(addr, &via).await;
            let t = Instant::now();
            let result = match socket {
                Ok(socket) => {
                    let deadline = deadline.max(tokio::time::Instant::now() + timeout / 2);
                    tokio::time::timeout_at(deadline, socket.connect(addr)).await
                }
                Err(e) => Ok(Err(e)),
            };
            let failed = match &result {
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => Failed::Denied,
                Ok(Err(e)) => super::our_fault(e).map_or(Failed::Port, Failed::Ours),
                _ => Failed::Port,
            };
            (addr, matches!(result, Ok(Ok(_))), failed, t.elapsed())
        });
    };
    for addr in pending.by_ref().take(parallel.max(1)) {
        spawn(&mut running, addr);
    }
    while let Some(done) = running.join_next().await {
        // A connect attempt that panicked is a bug of ours: it goes up to
        // the check (and its round's supervisor), never read as "dead".
        let done = match done {
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            done => done,
        };
        match done {
            Ok((_, false, Failed::Denied, _)) => denied += 1,
            Ok((_, false, Failed::Ours(reason), _)) => error = Some(reason),
            _ => {}
        }
        if let Ok((addr, true, _, took)) = done {
            // The stream was dropped on return: a FIN, nothing sent.
            running.abort_all();
            return TcpOutcome {
                alive: true,
                seconds: took.as_secs_f64(),
                answered: Some(addr),
                unsupported: false,
                error: None,
            };
        }
        if let Some(addr) = pending.next() {
            spawn(&mut running, addr);
        }
    }
    TcpOutcome {
        alive: false,
        seconds: started.elapsed().as_secs_f64(),
        answered: None,
        unsupported: denied > 0 && denied == targets.len(),
        error,
    }
}

/// One connect to `addr` for a person's question (`portwarden why`): the
/// seconds it took, or what happened, in words.
pub async fn connect_once(addr: SocketAddr, via: &Via, timeout: Duration) -> Result<f64, String> {
    let socket = super::tcp_socket(addr, via)
        .await
        .map_err(|e| format!("could not be tried ({e})"))?;
    let t = Instant::now();
    match tokio::time::timeout(timeout, socket.connect(addr)).await {
        Ok(Ok(_stream)) => Ok(t.elapsed().as_secs_f64()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err("was refused: nothing accepts on it".into())
        }
        Ok(Err(e)) => Err(format!("failed: {e}")),
        Err(_) => Err(format!("timed out after {timeout:?} (no answer)")),
    }
}

/// Why one connect did not succeed.
#[derive(Debug, Clone, Copy)]
enum Failed {
    /// Refused, timed out, unreachable: the port's answer.
    Port,
    /// We may not enter the namespace.
    Denied,
    /// Our own lack of a resource.
    Ours(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn open_port_is_alive_closed_is_not() {
        rt().block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let up = probe(&[addr], &Via::Here, Duration::from_secs(1), 8).await;
            assert!(up.alive);
            assert!(up.seconds > 0.0);
            assert_eq!(up.answered, Some(addr));
            drop(listener);
            let down = probe(&[addr], &Via::Here, Duration::from_secs(1), 8).await;
            assert!(!down.alive);
            assert_eq!(down.answered, None);
        });
    }

    #[test]
    fn first_answer_wins_over_a_dead_address() {
        rt().block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let dead: SocketAddr = format!("127.0.0.2:{port}").parse().expect("addr");
            let live: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
            let out = probe(&[dead, live], &Via::Here, Duration::from_secs(1), 1).await;
            assert_eq!(out.answered, Some(live));
        });
    }
}
