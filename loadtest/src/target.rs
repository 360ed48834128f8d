//! The target: the URL given on the command line, checked to point at this
//! machine (loopback only), resolved once to the socket address every
//! connection uses, with the Host header and the protocol to speak.

use std::net::{IpAddr, SocketAddr};

use http::Uri;
use http::uri::{Authority, Scheme as UriScheme};

use crate::error::Error;

/// `http://` or `https://`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain text: HTTP/1.1, or h2c with prior knowledge.
    Http,
    /// TLS, the protocol chosen by ALPN.
    Https,
}

impl Scheme {
    /// The scheme as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Which HTTP version the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 in plain text; ALPN offers h2 and http/1.1 over TLS.
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only: h2c with prior knowledge, or h2 alone in ALPN.
    H2,
    /// HTTP/3 over QUIC (https:// only), on the URL's port over UDP.
    H3,
}

/// A checked, resolved target.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// http or https.
    pub scheme: Scheme,
    /// Where every connection goes (always a loopback address).
    pub addr: SocketAddr,
    /// The Host header / :authority sent with each request.
    pub authority: Authority,
    /// The protocol asked for.
    pub protocol: Protocol,
    /// Skip certificate checks.
    pub insecure: bool,
    path: String,
}

impl Target {
    /// Parses `url`, refuses anything that is not on this machine, and
    /// resolves a host name (such as `localhost`) once.
    pub async fn resolve(
        url: &str,
        host: Option<&str>,
        protocol: Protocol,
        insecure: bool,
    ) -> Result<Target, Error> {
        let uri: Uri = url.parse().map_err(|source| Error::NotAUrl {
            url: url.to_owned(),
            source,
        })?;
        let scheme = match uri.scheme() {
            Some(s) if *s == UriScheme::HTTP => Scheme::Http,
            Some(s) if *s == UriScheme::HTTPS => Scheme::Https,
            Some(s) => {
                return Err(Error::Scheme {
                    url: url.to_owned(),
                    scheme: s.to_string(),
                });
            }
            None => {
                return Err(Error::NoScheme {
                    url: url.to_owned(),
                });
            }
        };
        if protocol == Protocol::H3 && scheme == Scheme::Http {
            return Err(Error::H3NeedsTls {
                url: url.to_owned(),
            });
        }
        let Some(url_authority) = uri.authority().cloned() else {
            return Err(Error::NoHost {
                url: url.to_owned(),
            });
        };
        let port = url_authority.port_u16().unwrap_or(match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        });
        let addr = resolve_loopback(url_authority.host(), port).await?;
        let authority = match host {
            Some(h) => h.parse::<Authority>().map_err(|source| Error::Host {
                host: h.to_owned(),
                source,
            })?,
            None => url_authority,
        };
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".to_owned());
        Ok(Target {
            url: url.to_owned(),
            scheme,
            addr,
            authority,
            protocol,
            insecure,
            path,
        })
    }

    /// The URL's path and query (`/` when it has none).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether a connection to this target can carry several requests at
    /// once (HTTP/2 or HTTP/3).
    pub fn may_multiplex(&self) -> bool {
        match self.scheme {
            Scheme::Http => self.protocol == Protocol::H2,
            Scheme::Https => self.protocol != Protocol::Http1,
        }
    }

    /// The name sent in TLS SNI and checked against the certificate.
    pub fn server_name(&self) -> &str {
        self.authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
    }

    /// A short name of the protocol setting, for reports.
    pub fn protocol_label(&self) -> &'static str {
        match (self.scheme, self.protocol) {
            (_, Protocol::H3) => "https h3 (quic)",
            (Scheme::Http, Protocol::H2) => "h2c",
            (Scheme::Http, _) => "http/1.1",
            (Scheme::Https, Protocol::H2) => "https h2",
            (Scheme::Https, Protocol::Http1) => "https http/1.1",
            (Scheme::Https, Protocol::Auto) => "https (alpn h2, http/1.1)",
        }
    }
}

/// Resolves `host` and returns its address if it is on this machine; a name
/// with any address outside loopback is refused.
async fn resolve_loopback(host: &str, port: u16) -> Result<SocketAddr, Error> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return if is_loopback(ip) {
            Ok(SocketAddr::new(ip, port))
        } else {
            Err(not_loopback(host))
        };
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|source| Error::Resolve {
            host: host.to_owned(),
            source,
        })?
        .collect();
    match addrs.first() {
        None => Err(Error::NoAddress {
            host: host.to_owned(),
        }),
        Some(_) if addrs.iter().any(|a| !is_loopback(a.ip())) => Err(not_loopback(host)),
        Some(first) => Ok(*first),
    }
}

/// 127.0.0.0/8 and ::1 (also written as an IPv4-mapped IPv6 address).
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

fn not_loopback(host: &str) -> Error {
    Error::NotLoopback {
        host: host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn target(url: &str) -> Result<Target, Error> {
        Target::resolve(url, None, Protocol::Auto, false).await
    }

    #[tokio::test]
    async fn loopback_addresses_pass() {
        for url in [
            "http://127.0.0.1:8080/",
            "http://127.8.9.10/x",
            "https://[::1]:8443/a?b=1",
            "http://[::ffff:127.0.0.1]:81/",
        ] {
            let t = target(url).await.expect(url);
            assert!(t.addr.ip().to_canonical().is_loopback(), "{url}");
        }
        let t = target("https://[::1]:8443/a?b=1").await.expect("valid");
        assert_eq!(t.addr.port(), 8443);
        assert_eq!(t.path(), "/a?b=1");
        assert_eq!(t.server_name(), "::1");
        assert_eq!(
            target("http://127.0.0.1").await.expect("valid").addr.port(),
            80
        );
    }

    #[tokio::test]
    async fn other_addresses_are_refused() {
        for url in [
            "http://10.0.0.1/",
            "http://192.168.1.1:8080/",
            "https://8.8.8.8/",
            "http://[2001:db8::1]/",
            "http://0.0.0.0:8080/",
        ] {
            let err = target(url).await.expect_err(url);
            assert!(format!("{err}").contains("loopback"), "{url}: {err}");
        }
    }

    #[tokio::test]
    async fn malformed_urls_are_refused() {
        for url in ["ftp://127.0.0.1/", "127.0.0.1:8080", "http://", "not a url"] {
            assert!(target(url).await.is_err(), "{url}");
        }
    }

    #[tokio::test]
    async fn host_override_sets_authority_and_sni() {
        let t = Target::resolve(
            "https://127.0.0.1:8443/",
            Some("example.com"),
            Protocol::H2,
            true,
        )
        .await
        .expect("valid");
        assert_eq!(t.authority.as_str(), "example.com");
        assert_eq!(t.server_name(), "example.com");
        assert!(t.may_multiplex());
        assert!(
            Target::resolve("http://127.0.0.1/", Some("bad host"), Protocol::Auto, false)
                .await
                .is_err()
        );
    }
}
