//! The status page and its API, served from the latest snapshot like
//! `/metrics` (no I/O on a request, the work off the async threads):
//!
//! - `/`: the page ([`page`]), its assets under `/assets/` (embedded in
//!   the binary), under a strict Content-Security-Policy;
//! - `/api/v1/ports`, `/api/v1/targets`: JSON ([`api`]);
//! - `/api/v1/sd`: Prometheus HTTP service discovery of this host's ports;
//! - `/badge/<tcp|udp>/<port>.svg[?netns=]`, `/badge/target/<name>.svg`:
//!   small SVGs ([`badge`]).
//!
//! [`view`] is what they share: the rows, the filters, the sort orders.

mod api;
mod badge;
mod page;
mod view;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::get;
use tokio::sync::Semaphore;

use crate::engine::Shared;

/// What the page allows itself: our own script, style, images and fetches,
/// nothing inline, nothing from anywhere else.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const CSS: &str = include_str!("assets/status.css");
const JS: &str = include_str!("assets/status.js");
const FAVICON: &str = include_str!("assets/favicon.svg");

/// Pages, answers and badges in flight at once — rendered, or still being
/// sent to a client that reads slowly — shared by all; one more is
/// answered 503 at once. With [`view::MAX_ROWS`] rows an answer at most,
/// what slow readers can pin is bounded: on a host of 10,000 sockets, two
/// of the largest answers (~15 MB each) and their rendering on top of the
/// exporter's own (tests/trust.rs measures it).
pub const RENDERS: usize = 2;

#[derive(Clone)]
struct Status {
    shared: Arc<Shared>,
    host: Arc<str>,
    metrics_path: Arc<str>,
    probe: bool,
    renders: Arc<Semaphore>,
}

/// The routes of the page, its assets, the API and the badges; `probe`:
/// whether the page mentions `/probe`.
pub fn routes(shared: Arc<Shared>, metrics_path: &str, probe: bool) -> Router {
    let status = Status {
        shared,
        host: crate::discover::own::host_name().into(),
        metrics_path: metrics_path.into(),
        probe,
        renders: Arc::new(Semaphore::new(RENDERS)),
    };
    Router::new()
        .route("/", get(page))
        .route("/api/v1/ports", get(ports))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/events", get(events))
        .route("/api/v1/sd", get(sd))
        .route("/badge/{kind}/{file}", get(badge))
        .route(
            "/assets/status.css",
            get(|| async { asset(CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/assets/status.js",
            get(|| async { asset(JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/favicon.svg",
            get(|| async { asset(FAVICON, "image/svg+xml") }),
        )
        .with_state(status)
}

/// A response body that holds its render slot until it is dropped: sent
/// whole, or its connection closed.
struct Held {
    body: http_body_util::Full<axum::body::Bytes>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl hyper::body::Body for Held {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A response of the page, its API and badges: the server's, with the
/// page's own headers (no scripts from elsewhere, no framing, no caching).
fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response {
    super::response::page(status, content_type, CSP, body)
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = respond(StatusCode::OK, content_type, body);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

fn bad_request(why: &view::BadQuery, json: bool) -> Response {
    if json {
        let body = serde_json::json!({ "error": why.to_string() }).to_string();
        respond(StatusCode::BAD_REQUEST, "application/json", body)
    } else {
        respond(
            StatusCode::BAD_REQUEST,
            super::response::TEXT,
            format!("bad query: {why}\n"),
        )
    }
}

/// A render slot; `None` (counted) when every one is taken.
fn slot(status: &Status) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let slot = Arc::clone(&status.renders).try_acquire_owned().ok();
    if slot.is_none() {
        crate::counters::refused(crate::counters::Refused::Renders);
    }
    slot
}

/// Every slot taken: 503 at once, never a queue.
fn busy() -> Response {
    respond(
        StatusCode::SERVICE_UNAVAILABLE,
        super::response::TEXT,
        format!("busy: {RENDERS} pages, answers and badges are in flight; try again shortly\n"),
    )
}

/// Renders off the async threads, within a slot, and answers with a body
/// that keeps the slot until it is sent.
async fn render(
    status: &Status,
    code: StatusCode,
    content_type: &'static str,
    work: impl FnOnce() -> Vec<u8> + Send + 'static,
) -> Response {
    let Some(slot) = slot(status) else {
        return busy();
    };
    let work = move || {
        let mut body = work();
        // Held while a slow reader takes it: no slack from its growth.
        body.shrink_to_fit();
        // What rendering freed goes back to the kernel, not to an arena.
        crate::discover::alloc::release_free_memory();
        body
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(body) => respond(
            code,
            content_type,
            Body::new(Held {
                body: http_body_util::Full::new(body.into()),
                _slot: slot,
            }),
        ),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => unavailable(),
    }
}

fn query(uri: &Uri) -> Result<view::Query, view::BadQuery> {
    view::Query::parse(&super::query_params(uri.query().unwrap_or("")))
}

async fn page(State(status): State<Status>, uri: Uri) -> Response {
    let q = match query(&uri) {
        Ok(q) => q,
        Err(why) => return bad_request(&why, false),
    };
    let snapshot = status.shared.snapshot();
    let (host, metrics, probe) = (
        status.host.clone(),
        status.metrics_path.clone(),
        status.probe,
    );
    render(
        &status,
        StatusCode::OK,
        "text/html; charset=utf-8",
        move || {
            let frame = page::Frame {
                host: &host,
                metrics_path: &metrics,
                probe,
            };
            page::render(&snapshot, &frame, &q).into_bytes()
        },
    )
    .await
}

fn unavailable() -> Response {
    respond(
        StatusCode::SERVICE_UNAVAILABLE,
        super::response::TEXT,
        "the exporter is stopping\n",
    )
}

async fn ports(State(status): State<Status>, uri: Uri) -> Response {
    json(status, uri, api::ports).await
}

async fn targets(State(status): State<Status>, uri: Uri) -> Response {
    json(status, uri, api::targets).await
}

/// `/api/v1/events?since=N&action=A`: the recent events after sequence N
/// (all kept, without it), of one action if asked.
async fn events(State(status): State<Status>, uri: Uri) -> Response {
    let mut since = 0;
    let mut action = None;
    for (k, v) in super::query_params(uri.query().unwrap_or("")) {
        match k.as_str() {
            "since" => match v.parse::<u64>() {
                Ok(n) => since = n,
                Err(_) => {
                    let why = view::BadQuery(format!(
                        "since={v}: expected an event's sequence number (event.sequence), e.g. since=0"
                    ));
                    return bad_request(&why, true);
                }
            },
            "action" => match crate::events::Action::ALL.iter().find(|a| a.as_str() == v) {
                Some(a) => action = Some(*a),
                None => {
                    let why = view::BadQuery(format!(
                        "action={v}: expected port_listening, port_opened, port_closed or owner_changed"
                    ));
                    return bad_request(&why, true);
                }
            },
            _ => {}
        }
    }
    let snapshot = status.shared.snapshot();
    let host = status.host.clone();
    render(&status, StatusCode::OK, "application/json", move || {
        api::events(&snapshot, &host, since, action)
    })
    .await
}

/// `/api/v1/sd[?host=H]`: Prometheus HTTP service discovery of this
/// host's listening sockets. Wildcard sockets are given at `host`, else at
/// the host the request was addressed to (its `Host` header) unless that
/// is loopback.
async fn sd(State(status): State<Status>, headers: axum::http::HeaderMap, uri: Uri) -> Response {
    let mut host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(host_part)
        .filter(|h| !is_loopback_name(h));
    for (k, v) in super::query_params(uri.query().unwrap_or("")) {
        if k == "host" {
            if !valid_host(&v) {
                let why = view::BadQuery(format!(
                    "host={v}: expected an IP address or a DNS name, e.g. host=10.0.0.5"
                ));
                return bad_request(&why, true);
            }
            host = Some(v);
        }
    }
    let snapshot = status.shared.snapshot();
    render(&status, StatusCode::OK, "application/json", move || {
        api::sd(&snapshot, host.as_deref())
    })
    .await
}

/// The host of a `Host` header: without its port, IPv6 without brackets.
fn host_part(h: &str) -> String {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default().to_string();
    }
    match h.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host.to_string()
        }
        _ => h.to_string(),
    }
}

fn is_loopback_name(h: &str) -> bool {
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

/// An IP address, or a DNS name (letters, digits, `-` and `.`).
fn valid_host(h: &str) -> bool {
    h.parse::<std::net::IpAddr>().is_ok()
        || (!h.is_empty()
            && h.len() <= 253
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
}

async fn json(
    status: Status,
    uri: Uri,
    make: fn(&crate::engine::Snapshot, &str, &view::Query) -> Vec<u8>,
) -> Response {
    let q = match query(&uri) {
        Ok(q) => q,
        Err(why) => return bad_request(&why, true),
    };
    let snapshot = status.shared.snapshot();
    let host = status.host.clone();
    render(&status, StatusCode::OK, "application/json", move || {
        make(&snapshot, &host, &q)
    })
    .await
}

async fn badge(
    State(status): State<Status>,
    Path((kind, file)): Path<(String, String)>,
    uri: Uri,
) -> Response {
    let params = super::query_params(uri.query().unwrap_or(""));
    let netns = params
        .iter()
        .find(|(k, v)| k == "netns" && !v.is_empty())
        .map_or("host", |(_, v)| v.as_str());
    let Some(slot) = slot(&status) else {
        return busy();
    };
    let (found, svg) = badge::answer(&status.shared.snapshot(), &kind, &file, netns);
    let code = if found {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    respond(
        code,
        "image/svg+xml",
        Body::new(Held {
            body: http_body_util::Full::new(svg.into()),
            _slot: slot,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_a_request_was_addressed_to() {
        assert_eq!(host_part("10.0.0.5:9765"), "10.0.0.5");
        assert_eq!(host_part("[2001:db8::5]:9765"), "2001:db8::5");
        assert_eq!(host_part("web1.example"), "web1.example");
        assert_eq!(host_part("2001:db8::5"), "2001:db8::5");
        assert!(is_loopback_name("localhost") && is_loopback_name("127.0.0.1"));
        assert!(is_loopback_name("::1") && !is_loopback_name("10.0.0.5"));
        assert!(valid_host("10.0.0.5") && valid_host("web-1.example") && valid_host("::1"));
        assert!(!valid_host("a b") && !valid_host("") && !valid_host("x/y"));
    }
}
