//! Name resolution for origin servers: every address a name resolves to
//! becomes a server of its own, and each server's connector dials exactly
//! that address, whatever the request URI names (the URI carries the site's
//! authority; TLS names come from the configuration).

use std::net::SocketAddr;
use std::task::{Context, Poll};

/// A connector that dials one fixed address for every URI, and counts the
/// connections it opens (attempts included).
#[derive(Clone, Debug)]
pub struct Dial<C> {
    inner: C,
    target: http::Uri,
    connects: prometheus::IntCounter,
}

impl<C> Dial<C> {
    pub fn new(inner: C, addr: SocketAddr, connects: prometheus::IntCounter) -> Self {
        // An IP literal is never resolved: the inner connector dials it as written.
        let target = http::Uri::try_from(format!("http://{addr}"))
            .unwrap_or_else(|_| http::Uri::from_static("http://0.0.0.0:0"));
        Self {
            inner,
            target,
            connects,
        }
    }
}

impl<C: tower_service::Service<http::Uri>> tower_service::Service<http::Uri> for Dial<C> {
    type Response = C::Response;
    type Error = C::Error;
    type Future = C::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        self.connects.inc();
        self.inner.call(self.target.clone())
    }
}

/// The addresses of `host:port`, sorted and without duplicates. An IP
/// literal is its own single address.
pub async fn resolve(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{host} has no address"),
        ));
    }
    Ok(addrs)
}

/// The connector every origin client dials through: TLS (by the URI's
/// scheme) over a dial to one fixed address.
pub(crate) type Connector =
    hyper_boring::HttpsConnector<Dial<hyper_util::client::legacy::connect::HttpConnector>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literals_resolve_to_themselves_and_localhost_resolves() {
        assert_eq!(
            resolve("127.0.0.1", 80).await.unwrap(),
            vec!["127.0.0.1:80".parse().unwrap()]
        );
        assert_eq!(
            resolve("::1", 80).await.unwrap(),
            vec!["[::1]:80".parse().unwrap()]
        );
        let local = resolve("localhost", 8080).await.unwrap();
        assert!(
            local
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 8080),
            "{local:?}"
        );
    }
}
