//! Which protocol a client connection speaks, from its first bytes: the
//! HTTP/2 connection preface (RFC 9113 §3.4, prior knowledge on plain
//! text, or a TLS client that did not use ALPN), or else HTTP/1.
//!
//! The bytes read to decide are handed to whichever server takes the
//! connection, so nothing is read twice.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// What every HTTP/2 client sends first.
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection's protocol, and the bytes read to tell it.
#[derive(Debug)]
pub(crate) enum Sniffed {
    Http1(BytesMut),
    Http2(BytesMut),
}

/// Reads until the first bytes tell the protocol; None when the client
/// closed, failed, or sent too little by `deadline` (a slow client gets
/// the time a request head may take, no more).
pub(crate) async fn sniff<S: AsyncRead + Unpin>(
    stream: &mut S,
    deadline: Instant,
) -> Option<Sniffed> {
    let mut read = BytesMut::with_capacity(8 * 1024);
    loop {
        let n = read.len().min(PREFACE.len());
        if read[..n] != PREFACE[..n] {
            return Some(Sniffed::Http1(read));
        }
        if n == PREFACE.len() {
            return Some(Sniffed::Http2(read));
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut read)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(_)) => {}
            Err(_) => {
                tracing::debug!("a client sent no request in time; closing");
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;

    use super::*;

    async fn sniffed(pieces: &[&[u8]]) -> Option<Sniffed> {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        for piece in pieces {
            client.write_all(piece).await.unwrap();
        }
        drop(client);
        sniff(&mut server, Instant::now() + Duration::from_secs(5)).await
    }

    #[tokio::test]
    async fn the_preface_means_http2_and_anything_else_http1() {
        let mut h2 = PREFACE.to_vec();
        h2.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        match sniffed(&[&h2[..10], &h2[10..]]).await {
            Some(Sniffed::Http2(read)) => assert!(read.starts_with(PREFACE)),
            other => panic!("{other:?}"),
        }
        match sniffed(&[b"GET / HTTP/1.1\r\n"]).await {
            Some(Sniffed::Http1(read)) => assert_eq!(&read[..], b"GET / HTTP/1.1\r\n"),
            other => panic!("{other:?}"),
        }
        // "PRI" could begin either: the next bytes decide.
        match sniffed(&[b"PRI", b" /x HTTP/1.1\r\n"]).await {
            Some(Sniffed::Http1(read)) => assert!(read.starts_with(b"PRI")),
            other => panic!("{other:?}"),
        }
        assert!(
            sniffed(&[b"PRI * HTTP/2.0"]).await.is_none(),
            "closed midway"
        );
        assert!(sniffed(&[]).await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_given_up_at_the_deadline() {
        let (_client, mut server) = tokio::io::duplex(64);
        let deadline = Instant::now() + Duration::from_secs(3);
        assert!(sniff(&mut server, deadline).await.is_none());
        assert!(Instant::now() >= deadline);
    }
}
