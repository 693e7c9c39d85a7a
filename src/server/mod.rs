//! The HTTP side: `/metrics` (encoding the latest snapshot, nothing else), a
//! landing page, and a health endpoint. `app()` builds the router so tests
//! can call it without a socket; [`listen`] serves it over plain HTTP or
//! TLS with basic auth as [`web_config`] says, within [`listen`]'s limits.

pub mod auth;
pub mod listen;
pub mod probe;
pub mod web_config;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, Response};
use axum::routing::get;
use tokio::sync::Semaphore;

use crate::encoder::Format;
use crate::engine::Shared;
use crate::error::Error;

/// The router: metrics at `telemetry_path`, a landing page at `/`,
/// blackbox_exporter's `/probe` when given `slots` (each probe within them:
/// the process's cap on checks). At most `max_requests` scrapes are served at once (0: no
/// limit); more get 503 at once rather than queueing, as node_exporter's
/// `--web.max-requests`.
pub fn app(
    shared: Arc<Shared>,
    slots: Option<Arc<Semaphore>>,
    telemetry_path: &str,
    max_requests: usize,
) -> Router {
    let landing = landing_page(telemetry_path, slots.is_some());
    let probing = match slots {
        Some(slots) => {
            Router::new()
                .route("/probe", get(probe::probe))
                .with_state(probe::Probing {
                    shared: shared.clone(),
                    slots,
                })
        }
        None => Router::new(),
    };
    let limit = Scrapes {
        shared,
        slots: (max_requests > 0).then(|| Arc::new(Semaphore::new(max_requests))),
        max_requests,
    };
    Router::new()
        .route(telemetry_path, get(metrics))
        .route("/", get(move || async move { Html(landing) }))
        .route("/-/healthy", get(healthy))
        .with_state(limit)
        .merge(probing)
}

/// What a scrape needs: the snapshot, and a slot among the concurrent ones.
#[derive(Clone)]
struct Scrapes {
    shared: Arc<Shared>,
    slots: Option<Arc<Semaphore>>,
    max_requests: usize,
}

async fn metrics(State(scrapes): State<Scrapes>, headers: HeaderMap) -> Response {
    let _slot = match scrapes
        .slots
        .as_ref()
        .map(|s| s.clone().try_acquire_owned())
    {
        Some(Err(_)) => {
            let mut r = Response::new(Body::from(format!(
                "too many concurrent scrapes (--web.max-requests {})\n",
                scrapes.max_requests
            )));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            return r;
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
    let body = shared.snapshot().body(format, gzip);
    let mut response = Response::new(Body::from(bytes_of(body)));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    response
}

/// 200 while every thread and task of the engine runs and discovery is
/// fresh; 503 naming what is wrong otherwise.
async fn healthy(State(scrapes): State<Scrapes>) -> Response {
    match scrapes.shared.health() {
        Ok(()) => Response::new(Body::from("Healthy\n")),
        Err(why) => {
            let mut r = Response::new(Body::from(format!("Unhealthy: {why}\n")));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r
        }
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

fn landing_page(telemetry_path: &str, probe: bool) -> String {
    let path = telemetry_path
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('"', "&quot;");
    format!(
        "<!doctype html>\n<html><head><title>portwarden</title></head><body>\n\
         <h1>portwarden</h1>\n<p>Watches every listening TCP and UDP port of this host and the process behind it.</p>\n\
         <p><a href=\"{path}\">Metrics</a></p>\n{}<p>Version {}</p>\n</body></html>\n",
        if probe {
            "<p>Probe a target as blackbox_exporter does: <code>/probe?target=127.0.0.1:22&amp;module=tcp_connect</code></p>\n"
        } else {
            ""
        },
        env!("CARGO_PKG_VERSION")
    )
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
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
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
    fn landing_page_escapes_the_path() {
        assert!(landing_page("/m\"<x>", false).contains("href=\"/m&quot;&lt;x>\""));
    }
}
