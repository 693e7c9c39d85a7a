//! The HTTP side: `/metrics` (encoding the latest snapshot, nothing else),
//! the status page with its API and badges ([`status`]), `/probe`, and a
//! health endpoint. `app()` builds the router so tests
//! can call it without a socket; [`listen`] serves it over plain HTTP or
//! TLS with basic auth as [`web_config`] says, within [`listen`]'s limits.

pub mod auth;
pub mod listen;
pub mod probe;
pub mod response;
pub mod runbooks;
pub mod status;
pub mod web_config;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use tokio::sync::Semaphore;

use crate::encoder::Format;
use crate::engine::Shared;
use crate::error::Error;

/// The router: metrics at `telemetry_path`, the status page at `/` with
/// its API and badges ([`status`]), blackbox_exporter's `/probe` when
/// given its limits. At most `max_requests` scrapes are served at once (0:
/// no limit); more get 503 at once rather than queueing, as node_exporter's
/// `--web.max-requests`.
pub fn app(
    shared: Arc<Shared>,
    probe: Option<ProbeLimits>,
    telemetry_path: &str,
    max_requests: usize,
    status_page: bool,
) -> Router {
    let probing = match &probe {
        Some(limits) => {
            Router::new()
                .route("/probe", get(probe::probe))
                .with_state(probe::Probing {
                    shared: shared.clone(),
                    slots: Arc::new(Semaphore::new(limits.concurrency)),
                    budget: limits.concurrency,
                    max_timeout: limits.max_timeout,
                    destinations: Arc::new(limits.destinations.clone()),
                })
        }
        None => Router::new(),
    };
    let limit_shared = shared.clone();
    let limit = Scrapes {
        shared,
        slots: (max_requests > 0).then(|| Arc::new(Semaphore::new(max_requests))),
        max_requests,
    };
    let status = if status_page {
        status::routes(limit_shared, telemetry_path, probe.is_some())
    } else {
        Router::new()
    };
    Router::new()
        .route(telemetry_path, get(metrics))
        .route("/-/healthy", get(healthy))
        .with_state(limit)
        .route("/runbooks", get(runbooks::index))
        .route("/runbooks/{alert}", get(runbooks::one))
        .merge(status)
        .merge(probing)
}

/// What `/probe` may do: its checks in flight, a probe's longest time,
/// where it may connect.
#[derive(Debug, Clone)]
pub struct ProbeLimits {
    pub concurrency: usize,
    pub max_timeout: std::time::Duration,
    pub destinations: crate::probe::check::Destinations,
}

/// What a scrape needs: the snapshot, and a slot among the concurrent ones.
#[derive(Clone)]
struct Scrapes {
    shared: Arc<Shared>,
    slots: Option<Arc<Semaphore>>,
    max_requests: usize,
}

async fn metrics(State(scrapes): State<Scrapes>, headers: HeaderMap) -> Response {
    crate::engine::supervise::fault("scrape");
    let _slot = match scrapes
        .slots
        .as_ref()
        .map(|s| s.clone().try_acquire_owned())
    {
        Some(Err(_)) => {
            crate::counters::refused(crate::counters::Refused::Scrapes);
            return unavailable(format!(
                "too many concurrent scrapes ({} {})\n",
                crate::config::flag("max_requests"),
                scrapes.max_requests
            ));
        }
        Some(Ok(slot)) => Some(slot),
        None => None,
    };
    let shared = scrapes.shared;
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(accepts_gzip);
    let snapshot = shared.snapshot();
    let body = match snapshot.ready(format, gzip) {
        Some(body) => body,
        // The first request of a variant: encoded off the async workers,
        // and from now on ahead of demand with every snapshot.
        None => {
            shared.want(format, gzip);
            match tokio::task::spawn_blocking(move || snapshot.body(format, gzip)).await {
                Ok(body) => body,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => return unavailable("encoding was cancelled (shutting down)\n".into()),
            }
        }
    };
    let mut response = response::with_type(
        StatusCode::OK,
        format.content_type(),
        Body::from(bytes_of(body)),
    );
    let h = response.headers_mut();
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    response
}

fn unavailable(text: String) -> Response {
    response::text(StatusCode::SERVICE_UNAVAILABLE, text)
}

/// 200 while every thread and task of the engine runs and discovery and
/// every loop of checks are fresh; 503 naming what is wrong otherwise.
async fn healthy(State(scrapes): State<Scrapes>) -> Response {
    match scrapes.shared.health() {
        Ok(()) => response::text(StatusCode::OK, "Healthy\n"),
        Err(why) => unavailable(format!("Unhealthy: {why}\n")),
    }
}

/// The body as bytes without copying the shared buffer.
fn bytes_of(body: Arc<[u8]>) -> axum::body::Bytes {
    axum::body::Bytes::from_owner(ArcBytes(body))
}

struct ArcBytes(Arc<[u8]>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Whether an `Accept-Encoding` header allows gzip (and does not refuse it
/// with `q=0`).
fn accepts_gzip(value: &str) -> bool {
    value.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("");
        let refused =
            parts.any(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()) == Some(0.0));
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
    })
}

/// `a=1&b=x%2Fy+z` as pairs, percent-decoded (`+` a space), as a form.
pub(crate) fn query_params(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escaped = (b[i] == b'%')
            .then(|| Some(hex(*b.get(i + 1)?)? * 16 + hex(*b.get(i + 2)?)?))
            .flatten();
        match (b[i], escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 2;
            }
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Binds `addr`; a taken port is a plain error naming the address.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = crate::discover::os::terminated();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("deflate, gzip;q=0.5"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("identity"));
        assert!(!accepts_gzip(""));
    }

    #[test]
    fn query_parameters_are_decoded() {
        let p = query_params(
            "target=https%3A%2F%2Fa.test%2Fx%3Fy%3D1&module=http_2xx&debug=true&x=%zz+%",
        );
        assert_eq!(p[0], ("target".into(), "https://a.test/x?y=1".into()));
        assert_eq!(p[1].1, "http_2xx");
        assert_eq!(p[3].1, "%zz %");
    }
}
