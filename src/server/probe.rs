//! `/probe?target=…&module=…`: blackbox_exporter's multi-target pattern. A
//! scrape config written for blackbox_exporter works by changing only the
//! exporter's address: the same parameters, the same module file format,
//! the same metric names and meanings, the same timeout rule (Prometheus's
//! `X-Prometheus-Scrape-Timeout-Seconds` less half a second, or the
//! module's own when shorter), within a ceiling of ours
//! (`--web.probe-max-timeout`). Probes have a budget of their own
//! (`--web.probe-concurrency`): a caller of `/probe` can never delay the
//! host's own checks, and a probe over budget is answered 503 at once,
//! never queued. Where a probe may connect is [`Destinations`]'s rule.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use tokio::sync::Semaphore;

use crate::encoder::{Encoder, Format, Kind};
use crate::engine::Shared;
use crate::modules::Prober;
use crate::probe::check::{self, Destinations, Reason, Report};

/// What `/probe` needs: the modules in force (from the latest snapshot),
/// its budget of checks in flight, its ceiling on a probe's time and where
/// it may connect.
#[derive(Clone)]
pub struct Probing {
    pub shared: Arc<Shared>,
    pub slots: Arc<Semaphore>,
    /// The slots' number, for the 503's message.
    pub budget: usize,
    pub max_timeout: Duration,
    pub destinations: Arc<Destinations>,
}

/// blackbox_exporter's `--timeout-offset` default.
const TIMEOUT_OFFSET: f64 = 0.5;
/// Without the scrape timeout header, as blackbox: 120 s (then our ceiling).
const NO_HEADER_TIMEOUT: f64 = 120.0;

pub async fn probe(State(p): State<Probing>, uri: Uri, headers: HeaderMap) -> Response {
    let params = super::query_params(uri.query().unwrap_or(""));
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let module_name = param("module")
        .filter(|m| !m.is_empty())
        .unwrap_or("http_2xx");
    let snapshot = p.shared.snapshot();
    let Some(module) = snapshot.by_list.modules.get(module_name).cloned() else {
        return super::response::text(
            StatusCode::BAD_REQUEST,
            format!("Unknown module {module_name:?}\n"),
        );
    };
    drop(snapshot);
    if let Prober::Unsupported(prober) = &module.prober {
        return super::response::text(
            StatusCode::BAD_REQUEST,
            format!(
                "Module {module_name:?} uses the {prober} prober, which portwarden does not have (tcp, http and udp it has)\n"
            ),
        );
    }
    let Some(target) = param("target").filter(|t| !t.is_empty()) else {
        return super::response::text(StatusCode::BAD_REQUEST, "Target parameter is missing\n");
    };
    let Some(scrape_timeout) = scrape_timeout(headers.get("X-Prometheus-Scrape-Timeout-Seconds"))
    else {
        return super::response::text(
            StatusCode::BAD_REQUEST,
            "Failed to parse timeout from Prometheus header (expected seconds, a number from 0 up)\n",
        );
    };
    let timeout = timeout(scrape_timeout, module.timeout, p.max_timeout);
    let debug = param("debug") == Some("true");

    let report = match check::plan(&module, target) {
        Err(why) => {
            // As blackbox: a target its prober cannot read is a failed
            // probe, not a failed scrape.
            let mut r = Report::failed_before_start();
            r.log.push(format!("Could not read the target: {why}"));
            r
        }
        Ok(endpoint) => {
            let Ok(_slot) = Arc::clone(&p.slots).try_acquire_owned() else {
                crate::counters::refused(crate::counters::Refused::Probes);
                return super::response::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "too many probes in flight ({} {}): try again later\n",
                        crate::config::flag("web_probe_concurrency"),
                        p.budget
                    ),
                );
            };
            check::run(&endpoint, &module, timeout, &p.destinations).await
        }
    };
    if let Some(ours) = report.ours {
        return super::response::text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the probe could not be tried for a lack of ours ({ours}): no verdict on the target\n"
            ),
        );
    }
    // The target itself is one /probe may not reach: the caller's error,
    // not the target's failure. (A redirect there is the target's answer.)
    if report.reason == Some(Reason::Denied)
        && report.http.as_ref().is_none_or(|h| h.redirects == 0)
    {
        let why = report
            .log
            .iter()
            .rev()
            .find(|l| l.contains("Not connecting to"));
        return super::response::text(
            StatusCode::FORBIDDEN,
            format!(
                "target {target:?} may not be probed here: {}\n",
                why.map_or("denied", |l| l.trim())
            ),
        );
    }
    let format = if debug {
        Format::Text
    } else {
        Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))
    };
    let metrics = encode(&report, &module.prober, format);
    if debug {
        let mut body = String::from("Logs for the probe:\n");
        for line in &report.log {
            let _ = writeln!(body, "{line}");
        }
        let _ = write!(
            body,
            "\n\n\nMetrics that would have been returned:\n{}\n\n\nModule configuration:\n{module:#?}\n",
            String::from_utf8_lossy(&metrics)
        );
        return super::response::text(StatusCode::OK, body);
    }
    super::response::with_type(StatusCode::OK, format.content_type(), metrics)
}

/// The scrape's timeout from Prometheus's header, in seconds: 0 without
/// one; `None` for a value that is not a number of seconds from 0 up (NaN,
/// an infinity, a negative, garbage). Any finite size is taken: the
/// ceiling comes after.
fn scrape_timeout(header: Option<&HeaderValue>) -> Option<f64> {
    let Some(value) = header else {
        return Some(0.0);
    };
    let seconds: f64 = value.to_str().ok()?.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then_some(seconds)
}

/// blackbox_exporter's rule: the scrape's timeout less the offset, or the
/// module's own when it is shorter (or when the offset leaves nothing);
/// never more than `ceiling`.
fn timeout(scrape: f64, module: Option<Duration>, ceiling: Duration) -> Duration {
    let scrape = if scrape == 0.0 {
        NO_HEADER_TIMEOUT
    } else {
        scrape
    };
    let most = scrape - TIMEOUT_OFFSET;
    let own = module.map_or(0.0, |d| d.as_secs_f64());
    let seconds = if (own > 0.0 && own < most) || most < 0.0 {
        own
    } else {
        most
    };
    // Bounded as a number first (NaN too): a Duration of 1e300 s would
    // not exist.
    Duration::from_secs_f64(seconds.max(0.0).min(ceiling.as_secs_f64()))
}

/// The probe's metrics, by blackbox_exporter's names, in name order.
fn encode(r: &Report, prober: &Prober, format: Format) -> Vec<u8> {
    type Samples = Vec<(Vec<(&'static str, String)>, f64)>;
    let mut families: Vec<(&str, &str, Samples)> = Vec::new();
    let mut one = |name, help, v: f64| families.push((name, help, vec![(Vec::new(), v)]));
    one(
        "probe_dns_lookup_time_seconds",
        "Returns the time taken for probe dns lookup in seconds",
        r.resolve_seconds,
    );
    one(
        "probe_duration_seconds",
        "Returns how long the probe took to complete in seconds",
        r.seconds,
    );
    if let Some(ip) = r.address {
        one(
            "probe_ip_addr_hash",
            "Specifies the hash of IP address. It's useful to detect if the IP address changes.",
            ip_hash(ip),
        );
    }
    one(
        "probe_ip_protocol",
        "Specifies whether probe ip protocol is IP4 or IP6",
        r.ip_protocol.map_or(0.0, f64::from),
    );
    one(
        "probe_success",
        "Displays whether or not the probe was a success",
        f64::from(u8::from(r.success)),
    );
    if let Some(failed) = r.regex_failed {
        one(
            "probe_failed_due_to_regex",
            "Indicates if probe failed due to regex",
            f64::from(u8::from(failed)),
        );
    } else if matches!(prober, Prober::Http(_) | Prober::Tcp(_)) {
        one(
            "probe_failed_due_to_regex",
            "Indicates if probe failed due to regex",
            0.0,
        );
    }
    if let Some(t) = r.tls
        && let Some(version) = t.version
    {
        if let Some(d) = t.dates {
            one(
                "probe_ssl_earliest_cert_expiry",
                "Returns last SSL chain expiry in unixtime",
                d.not_after as f64,
            );
        }
        families.push((
            "probe_tls_version_info",
            "Returns the TLS version used or NaN when unknown",
            vec![(vec![("version", version.to_string())], 1.0)],
        ));
    }
    if let Prober::Http(_) = prober {
        let h = r.http.clone().unwrap_or_default();
        families.push((
            "probe_http_duration_seconds",
            "Duration of http request by phase, summed over all redirects",
            h.phases_by_name()
                .into_iter()
                .map(|(phase, v)| (vec![("phase", phase.to_string())], v))
                .collect(),
        ));
        let mut one = |name, help, v: f64| families.push((name, help, vec![(Vec::new(), v)]));
        one(
            "probe_http_status_code",
            "Response HTTP status code",
            f64::from(h.status),
        );
        one(
            "probe_http_content_length",
            "Length of http content response",
            // As Go's empty response when none came: 0, not -1.
            if h.status > 0 {
                h.content_length as f64
            } else {
                0.0
            },
        );
        one(
            "probe_http_uncompressed_body_length",
            "Length of uncompressed response body",
            h.body_bytes as f64,
        );
        one(
            "probe_http_redirects",
            "The number of redirects",
            f64::from(h.redirects),
        );
        one(
            "probe_http_ssl",
            "Indicates if SSL was used for the final redirect",
            f64::from(u8::from(h.ssl && h.status > 0)),
        );
        one(
            "probe_http_version",
            "Returns the version of HTTP of the probe response",
            h.version,
        );
    }
    if let Some(class) = r.udp_class {
        families.push((
            "probe_udp_class",
            "What the UDP probe saw: open (a reply), closed (port unreachable), open|filtered (silence), unreachable; always 1",
            vec![(vec![("class", class.to_string())], 1.0)],
        ));
    }
    families.sort_by_key(|(name, _, _)| *name);
    let mut enc = Encoder::new(format);
    for (name, help, samples) in families {
        let mut f = enc.family(name, help, Kind::Gauge);
        for (labels, v) in samples {
            let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            f.sample(&labels, v);
        }
    }
    enc.finish()
}

/// blackbox's: FNV-1a (32 bits) of the address's bytes (4 for IPv4).
fn ip_hash(ip: std::net::IpAddr) -> f64 {
    let bytes: Vec<u8> = match ip {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    f64::from(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_is_blackboxs_within_our_ceiling() {
        let s = |d: Duration| d.as_secs_f64();
        let most = Duration::from_secs(30);
        assert_eq!(s(timeout(10.0, None, most)), 9.5);
        assert_eq!(s(timeout(10.0, Some(Duration::from_secs(3)), most)), 3.0);
        assert_eq!(s(timeout(2.0, Some(Duration::from_secs(5)), most)), 1.5);
        assert_eq!(s(timeout(0.0, None, most)), 30.0);
        assert_eq!(s(timeout(0.0, None, Duration::from_secs(200))), 119.5);
        assert_eq!(s(timeout(0.2, None, most)), 0.0);
        assert_eq!(s(timeout(1e300, None, most)), 30.0);
        assert_eq!(
            s(timeout(f64::MAX, Some(Duration::from_secs(5)), most)),
            5.0
        );
    }

    #[test]
    fn timeout_headers_are_numbers_of_seconds_or_refused() {
        let h = |v: &str| scrape_timeout(Some(&HeaderValue::from_str(v).expect("header")));
        assert_eq!(scrape_timeout(None), Some(0.0));
        assert_eq!(h(" 10 "), Some(10.0));
        assert_eq!(h("1e300"), Some(1e300));
        for bad in ["NaN", "inf", "-inf", "-1", "x", "", "1s", "0x10"] {
            assert_eq!(h(bad), None, "{bad}");
        }
        assert_eq!(
            scrape_timeout(Some(&HeaderValue::from_bytes(b"\xff1").expect("header"))),
            None
        );
    }

    proptest::proptest! {
        /// Whatever a client sends as the header, the probe's timeout is a
        /// Duration within the ceiling, or the header is refused: never a
        /// panic.
        #[test]
        fn no_timeout_header_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
                                    number in proptest::num::f64::ANY,
                                    module in proptest::option::of(0u64..1_000_000)) {
            let ceiling = Duration::from_secs(30);
            let module = module.map(Duration::from_millis);
            for value in [HeaderValue::from_bytes(&bytes).ok(), HeaderValue::from_str(&number.to_string()).ok()]
                .into_iter()
                .flatten()
            {
                if let Some(seconds) = scrape_timeout(Some(&value)) {
                    proptest::prop_assert!(timeout(seconds, module, ceiling) <= ceiling);
                }
            }
            proptest::prop_assert!(timeout(number.abs(), module, ceiling) <= ceiling);
        }
    }

    #[test]
    fn the_address_hash_is_blackboxs() {
        // What blackbox_exporter 0.23 writes for 127.0.0.1.
        assert_eq!(ip_hash("127.0.0.1".parse().expect("ip")), 3_668_918_509.0);
    }
}
