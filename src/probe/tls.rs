//! The TLS side of a check: a handshake as a module's `tls_config` says,
//! and the dates of the certificates the server presented — read even when
//! they fail verification (an expired certificate is exactly the one whose
//! date matters), from the certificates' own DER.

use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::modules::TlsModule;

/// What a handshake showed of the server's certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertDates {
    /// The latest start of validity among them (Unix seconds): before it,
    /// the chain is not yet valid.
    pub not_before: i64,
    /// The earliest end of validity among them: what expires first
    /// (blackbox's `probe_ssl_earliest_cert_expiry`).
    pub not_after: i64,
}

/// A completed handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// `TLS 1.2` or `TLS 1.3`, as blackbox writes it.
    pub version: &'static str,
    pub dates: Option<CertDates>,
}

/// A failed handshake: why, and the dates of what was presented, if
/// anything was.
#[derive(Debug)]
pub struct Failed {
    pub error: std::io::Error,
    pub dates: Option<CertDates>,
}

/// Where the system's trusted roots are looked for, first found wins
/// (`SSL_CERT_FILE` before them all).
const ROOT_FILES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// The system's trusted roots, read once. None found (a scratch image) is
/// an empty store: verification then fails with a reason in the log, and
/// `ca_file` or `insecure_skip_verify` are the ways out.
pub fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            use rustls::pki_types::pem::PemObject;
            let mut store = RootCertStore::empty();
            let env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
            let file = env
                .into_iter()
                .chain(ROOT_FILES.iter().map(std::path::PathBuf::from))
                .find(|p| p.is_file());
            if let Some(file) = file
                && let Ok(bytes) = std::fs::read(&file)
            {
                for cert in CertificateDer::pem_slice_iter(&bytes).flatten() {
                    let _ = store.add(cert);
                }
            }
            if store.is_empty() {
                tracing::warn!(
                    "no trusted root certificates found (SSL_CERT_FILE, {}): TLS checks verify against a module's ca_file only",
                    ROOT_FILES.join(", ")
                );
            }
            Arc::new(store)
        })
        .clone()
}

/// Performs a handshake over `stream` as `module` says; `host` is the
/// target's host, the server name unless the module names one.
pub async fn handshake(
    stream: TcpStream,
    host: &str,
    module: &TlsModule,
) -> Result<(TlsStream<TcpStream>, Handshake), Failed> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let config = match client_config(module, &seen) {
        Ok(config) => config,
        Err(error) => return Err(Failed { error, dates: None }),
    };
    let name = module.server_name.as_deref().unwrap_or(host);
    let server_name = match ServerName::try_from(name.to_string()) {
        Ok(n) => n,
        Err(e) => {
            return Err(Failed {
                error: std::io::Error::other(format!("invalid server name '{name}': {e}")),
                dates: None,
            });
        }
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let result = connector.connect(server_name, stream).await;
    let dates = {
        let certs = seen.lock().unwrap_or_else(|p| p.into_inner());
        dates_of(&certs)
    };
    match result {
        Ok(tls) => {
            let version = match tls.get_ref().1.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3",
                _ => "TLS 1.2",
            };
            Ok((tls, Handshake { version, dates }))
        }
        Err(error) => Err(Failed { error, dates }),
    }
}

fn client_config(
    module: &TlsModule,
    seen: &Arc<Mutex<Vec<CertificateDer<'static>>>>,
) -> std::io::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = module
        .ca
        .as_ref()
        .map_or_else(system_roots, |ca| Arc::clone(&ca.roots));
    let verify = if module.insecure_skip_verify {
        Verify::Nothing
    } else if roots.is_empty() {
        Verify::NoRoots
    } else {
        Verify::With(
            WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(std::io::Error::other)?,
        )
    };
    let verifier = Arc::new(Recording {
        verify,
        provider: provider.clone(),
        seen: Arc::clone(seen),
    });
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (module.min_version..=module.max_version).contains(v))
            .map(|(_, p)| p)
            .collect();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &module.client_cert {
        Some(c) => builder
            .with_client_auth_cert(c.chain.clone(), c.key.clone_key())
            .map_err(std::io::Error::other)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// How a presented chain is judged.
#[derive(Debug)]
enum Verify {
    /// `insecure_skip_verify`: accepted as it is.
    Nothing,
    /// No trusted root at all (a scratch image): refused, saying why.
    NoRoots,
    /// Against these roots.
    With(Arc<WebPkiServerVerifier>),
}

/// Verifies as [`Verify`] says, and keeps what the server presented,
/// whatever the verdict. Handshake signatures are checked in every case.
#[derive(Debug)]
struct Recording {
    verify: Verify,
    provider: Arc<rustls::crypto::CryptoProvider>,
    seen: Arc<Mutex<Vec<CertificateDer<'static>>>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.clear();
            seen.push(end_entity.clone().into_owned());
            seen.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        }
        match &self.verify {
            Verify::With(inner) => {
                inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            Verify::NoRoots => Err(rustls::Error::General(
                "no trusted root certificates on this host (set ca_file or SSL_CERT_FILE)".into(),
            )),
            Verify::Nothing => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The dates of a presented chain: latest start, earliest end. None when
/// nothing was presented or no certificate's dates could be read.
pub fn dates_of(certs: &[CertificateDer<'_>]) -> Option<CertDates> {
    certs
        .iter()
        .filter_map(|c| validity(c))
        .fold(None, |acc: Option<CertDates>, (nb, na)| {
            Some(match acc {
                None => CertDates {
                    not_before: nb,
                    not_after: na,
                },
                Some(d) => CertDates {
                    not_before: d.not_before.max(nb),
                    not_after: d.not_after.min(na),
                },
            })
        })
}

/// `notBefore` and `notAfter` of an X.509 certificate, as Unix seconds:
/// `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version
/// OPTIONAL, serialNumber, signature, issuer, validity SEQUENCE {
/// notBefore, notAfter }, … } … }` (RFC 5280 §4.1).
pub fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (tag, cert, _) = tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, mut tbs, _) = tlv(cert)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, _, rest) = tlv(tbs)?;
    if tag == 0xa0 {
        // Explicit version: skip it.
        tbs = rest;
    }
    // serialNumber, signature, issuer.
    for _ in 0..3 {
        tbs = tlv(tbs)?.2;
    }
    let (tag, validity, _) = tlv(tbs)?;
    if tag != 0x30 {
        return None;
    }
    let (t1, v1, rest) = tlv(validity)?;
    let (t2, v2, _) = tlv(rest)?;
    Some((time(t1, v1)?, time(t2, v2)?))
}

/// One DER element: tag, contents, what follows.
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, head) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = head.checked_add(len)?;
    Some((tag, b.get(head..end)?, b.get(end..)?))
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`), as RFC 5280 allows them: UTC, seconds, no fraction.
fn time(tag: u8, v: &[u8]) -> Option<i64> {
    let digits = |s: &[u8]| -> Option<i64> {
        s.iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let (year, rest) = match (tag, v.len()) {
        (0x17, 13) => {
            let yy = digits(&v[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &v[2..])
        }
        (0x18, 15) => (digits(&v[..4])?, &v[4..]),
        _ => return None,
    };
    if rest.last() != Some(&b'Z') {
        return None;
    }
    let (month, day) = (digits(&rest[0..2])?, digits(&rest[2..4])?);
    let (h, m, s) = (
        digits(&rest[4..6])?,
        digits(&rest[6..8])?,
        digits(&rest[8..10])?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(crate::value::time::days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_unix_seconds() {
        assert_eq!(time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(time(0x18, b"20261130090000Z"), Some(1_796_029_200));
        assert_eq!(time(0x18, b"20000229120000Z"), Some(951_825_600));
        for bad in [
            &b"7001010000Z"[..],
            b"701301000000Z",
            b"70010100000aZ",
            b"700101000000+",
        ] {
            assert_eq!(time(0x17, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn truncated_or_odd_der_is_none_never_a_panic() {
        assert_eq!(validity(&[]), None);
        assert_eq!(validity(&[0x30]), None);
        assert_eq!(validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(validity(&[0x30, 0x03, 0x30, 0x01, 0x00]), None);
        for n in 0..=255u8 {
            let _ = validity(&[0x30, n, 0x30, n, 0xa0, n]);
        }
    }
}
