//! TLS for scripted origins: a BoringSSL acceptor from a PEM chain and
//! key, choosing among the ALPN protocols it is given.

use boring::ssl::{AlpnError, SslAcceptor, SslMethod};

/// The acceptor of an origin that speaks HTTP/2 only (`h2`) or HTTP/1.1
/// only (`http/1.1`).
pub(crate) fn origin_acceptor(cert: &str, key: &str, http2_only: bool) -> SslAcceptor {
    let protocols: &'static [u8] = if http2_only {
        b"\x02h2"
    } else {
        b"\x08http/1.1"
    };
    tls_acceptor(cert, key, protocols)
}

/// A TLS acceptor for a test origin: the PEM chain and key, and the ALPN
/// protocols it picks from, best first, in wire format (`b"\x02h2"`).
pub fn tls_acceptor(cert: &str, key: &str, protocols: &'static [u8]) -> SslAcceptor {
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("acceptor");
    let mut chain = boring::x509::X509::stack_from_pem(cert.as_bytes())
        .expect("certificate")
        .into_iter();
    builder
        .set_certificate(&chain.next().expect("leaf"))
        .expect("set certificate");
    for extra in chain {
        builder.add_extra_chain_cert(extra).expect("chain");
    }
    builder
        .set_private_key(&boring::pkey::PKey::private_key_from_pem(key.as_bytes()).expect("key"))
        .expect("set key");
    builder.set_alpn_select_callback(move |_, client| {
        boring::ssl::select_next_proto(protocols, client).ok_or(AlpnError::NOACK)
    });
    builder.build()
}
