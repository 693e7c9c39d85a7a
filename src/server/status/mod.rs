//! The status page and its API, served from the latest snapshot like
//! `/metrics` (no I/O on a request, the work off the async threads):
//!
//! - `/`: the page ([`page`]), its assets under `/assets/` (embedded in
//!   the binary), under a strict Content-Security-Policy;
//! - `/api/v1/ports`, `/api/v1/targets`: JSON ([`api`]);
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

/// Pages and answers rendered at once; more wait their turn.
const RENDERS: usize = 4;

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
        host: host_name().into(),
        metrics_path: metrics_path.into(),
        probe,
        renders: Arc::new(Semaphore::new(RENDERS)),
    };
    Router::new()
        .route("/", get(page))
        .route("/api/v1/ports", get(ports))
        .route("/api/v1/targets", get(targets))
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

/// This host's name, as the page's title gives it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
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
            "text/plain; charset=utf-8",
            format!("bad query: {why}\n"),
        )
    }
}

/// Renders off the async threads, a few at a time.
async fn render<T: Send + 'static>(
    status: &Status,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let _turn = status.renders.acquire().await.ok()?;
    tokio::task::spawn_blocking(work).await.ok()
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
    match render(&status, move || {
        let frame = page::Frame {
            host: &host,
            metrics_path: &metrics,
            probe,
        };
        page::render(&snapshot, &frame, &q)
    })
    .await
    {
        Some(html) => respond(StatusCode::OK, "text/html; charset=utf-8", html),
        None => unavailable(),
    }
}

fn unavailable() -> Response {
    respond(
        StatusCode::SERVICE_UNAVAILABLE,
        "text/plain; charset=utf-8",
        "the exporter is stopping\n",
    )
}

async fn ports(State(status): State<Status>, uri: Uri) -> Response {
    json(status, uri, api::ports).await
}

async fn targets(State(status): State<Status>, uri: Uri) -> Response {
    json(status, uri, api::targets).await
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
    match render(&status, move || make(&snapshot, &host, &q)).await {
        Some(body) => respond(StatusCode::OK, "application/json", body),
        None => unavailable(),
    }
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
    let (found, svg) = badge::answer(&status.shared.snapshot(), &kind, &file, netns);
    let code = if found {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    respond(code, "image/svg+xml", svg)
}
