//! Every response the server writes starts here: its status and its
//! Content-Type (always one). Text and pages add
//! `X-Content-Type-Options: nosniff`; the exposition (`/metrics`,
//! `/probe`) does not, as promhttp writes it (node_exporter's headers are
//! compared in `tests/webconfig.rs`).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

/// A plain text type, as Go's `http.Error` writes it.
pub const TEXT: &str = "text/plain; charset=utf-8";

/// A response of `status` with `body` of `content_type`.
pub fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Body>,
) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// [`with_type`], and the browser told not to guess another type.
fn no_sniffing(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut r = with_type(status, content_type, body);
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// A page (the status page, its API and badges, the runbooks): a
/// response of `status` with the pages' own headers — its content
/// security policy `csp`, no referrer, no framing, no caching.
pub fn page(
    status: StatusCode,
    content_type: &'static str,
    csp: &'static str,
    body: impl Into<Body>,
) -> Response {
    let mut r = no_sniffing(status, content_type, body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A short text response (an error, a health answer).
pub fn text(status: StatusCode, body: impl Into<Body>) -> Response {
    no_sniffing(status, TEXT, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_response_says_its_type() {
        let r = text(StatusCode::SERVICE_UNAVAILABLE, "busy\n");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::CONTENT_TYPE], TEXT);
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }

    #[test]
    fn the_exposition_has_its_type_and_no_more_as_promhttp_writes_it() {
        let r = with_type(StatusCode::OK, TEXT, "");
        assert_eq!(r.headers().len(), 1);
    }
}
