//! Name resolution for origin servers: every address a name resolves to
//! becomes a server of its own, and each server's connector dials exactly
//! its address; and a connector wrapper that counts new connections.

use std::future::Ready;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

/// A resolver that always answers with one address.
#[derive(Clone, Debug)]
pub struct FixedAddr {
    addr: SocketAddr,
}

impl FixedAddr {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr }
    }
}

/// A connector that counts the connections it opens (attempts included).
#[derive(Clone, Debug)]
pub struct Counted<C> {
    inner: C,
    connects: prometheus::IntCounter,
}

impl<C> Counted<C> {
    pub fn new(inner: C, connects: prometheus::IntCounter) -> Self {
        Self { inner, connects }
    }
}

impl<C: tower_service::Service<http::Uri>> tower_service::Service<http::Uri> for Counted<C> {
    type Response = C::Response;
    type Error = C::Error;
    type Future = C::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        self.connects.inc();
        self.inner.call(uri)
    }
}

impl tower_service::Service<Name> for FixedAddr {
    type Response = std::iter::Once<SocketAddr>;
    type Error = std::io::Error;
    type Future = Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _name: Name) -> Self::Future {
        std::future::ready(Ok(std::iter::once(self.addr)))
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
