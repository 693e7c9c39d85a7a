//! Every response the server writes starts here: its status, its
//! Content-Type (always one) and `X-Content-Type-Options: nosniff`. The
//! status page adds its own headers on top ([`super::status`]).

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
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// A short text response (an error, a health answer).
pub fn text(status: StatusCode, body: impl Into<Body>) -> Response {
    with_type(status, TEXT, body)
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
}
