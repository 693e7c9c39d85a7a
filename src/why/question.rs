//! What `portwarden why` is asked: `PORT[/tcp|/udp]`, `HOST:PORT` or a URL,
//! read as the port to look at and the client that wants it.

use std::net::IpAddr;

use serde::Serialize;

use crate::model::Proto;

/// Who wants to connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Client {
    /// A client on another host, either family (`why 8080`).
    Remote,
    /// `localhost`: this host, over loopback, either family.
    Localhost,
    /// A client that uses this address (`why 127.0.0.1:8080`).
    Address(IpAddr),
}

impl Client {
    /// For people: `clients on other hosts`, `127.0.0.1 clients`.
    pub fn describe(&self) -> String {
        match self {
            Client::Remote => "clients on other hosts".into(),
            Client::Localhost => "clients on this host (localhost)".into(),
            Client::Address(a) => format!("clients of {a}"),
        }
    }
}

/// The question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// As given.
    pub text: String,
    pub proto: Proto,
    pub port: u16,
    pub client: Client,
}

const FORMS: &str = "PORT, PORT/tcp, PORT/udp, HOST:PORT ([::1]:PORT for IPv6) or an http(s) URL, where HOST is an address of this host or localhost";

fn port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("{s:?} is not a port (1–65535)")),
    }
}

fn host(s: &str) -> Result<Client, String> {
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    if bare.eq_ignore_ascii_case("localhost") {
        return Ok(Client::Localhost);
    }
    bare.parse::<IpAddr>()
        .map(Client::Address)
        .map_err(|_| format!("{s:?} is not an address (an IP address or localhost)"))
}

impl Question {
    /// Parses what was asked; the error names the accepted forms. Pure.
    pub fn parse(text: &str) -> Result<Question, String> {
        let bad = |why: String| format!("{why}; give {FORMS}");
        let t = text.trim();
        let (proto, client, port) = if let Some((scheme, rest)) = t.split_once("://") {
            let default = match scheme.to_ascii_lowercase().as_str() {
                "http" => 80,
                "https" => 443,
                other => return Err(bad(format!("{other}:// is not a URL scheme why reads"))),
            };
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let authority = authority.rsplit('@').next().unwrap_or(authority);
            let (h, p) = split_host_port(authority).map_err(bad)?;
            let p = match p {
                Some(p) => port(p).map_err(bad)?,
                None => default,
            };
            (Proto::Tcp, host(h).map_err(bad)?, p)
        } else if let Some((p, proto)) = t.split_once('/') {
            let proto = match proto.to_ascii_lowercase().as_str() {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                other => return Err(bad(format!("{other:?} is not tcp or udp"))),
            };
            (proto, Client::Remote, port(p).map_err(bad)?)
        } else if t.bytes().all(|b| b.is_ascii_digit()) && !t.is_empty() {
            (Proto::Tcp, Client::Remote, port(t).map_err(bad)?)
        } else {
            let (h, p) = split_host_port(t).map_err(bad)?;
            let p = p.ok_or_else(|| bad(format!("{t:?} names no port")))?;
            (Proto::Tcp, host(h).map_err(bad)?, port(p).map_err(bad)?)
        };
        Ok(Question {
            text: text.to_string(),
            proto,
            port,
            client,
        })
    }
}

/// `host:port`, `[v6]:port`, `host` → (host, port).
fn split_host_port(s: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?} opens a [ it does not close"))?;
        return match after {
            "" => Ok((h, None)),
            a => match a.strip_prefix(':') {
                Some(p) => Ok((h, Some(p))),
                None => Err(format!("{s:?}: expected :PORT after ]")),
            },
        };
    }
    match s.matches(':').count() {
        0 => Ok((s, None)),
        1 => {
            let (h, p) = s.split_once(':').unwrap_or((s, ""));
            Ok((h, Some(p)))
        }
        // A bare IPv6 address: no port.
        _ => Ok((s, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> (Proto, u16, Client) {
        let q = Question::parse(s).expect(s);
        (q.proto, q.port, q.client)
    }

    #[test]
    fn every_form() {
        assert_eq!(q("8080"), (Proto::Tcp, 8080, Client::Remote));
        assert_eq!(q("53/udp"), (Proto::Udp, 53, Client::Remote));
        assert_eq!(q("22/TCP"), (Proto::Tcp, 22, Client::Remote));
        assert_eq!(
            q("127.0.0.1:8080"),
            (
                Proto::Tcp,
                8080,
                Client::Address("127.0.0.1".parse().expect("ip"))
            )
        );
        assert_eq!(
            q("[::1]:8080"),
            (
                Proto::Tcp,
                8080,
                Client::Address("::1".parse().expect("ip"))
            )
        );
        assert_eq!(q("localhost:3000"), (Proto::Tcp, 3000, Client::Localhost));
        assert_eq!(
            q("http://127.0.0.1:8080/health?x=1"),
            (
                Proto::Tcp,
                8080,
                Client::Address("127.0.0.1".parse().expect("ip"))
            )
        );
        assert_eq!(
            q("https://localhost/"),
            (Proto::Tcp, 443, Client::Localhost)
        );
        assert_eq!(
            q("http://[::1]/"),
            (Proto::Tcp, 80, Client::Address("::1".parse().expect("ip")))
        );
    }

    #[test]
    fn bad_input_names_the_forms() {
        for bad in [
            "",
            "0",
            "70000",
            "8080/sctp",
            "example.com:80",
            "127.0.0.1",
            "ftp://x/",
            "[::1",
            "http://example.com/",
        ] {
            let e = Question::parse(bad).expect_err(bad);
            assert!(e.contains("give PORT, PORT/tcp"), "{bad}: {e}");
        }
    }
}
