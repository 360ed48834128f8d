//! HTTP/2 by hand, for sending what a well-behaved client library never
//! would: malformed header blocks and frame floods (RFC 9113).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const ACK: u8 = 0x1;

/// GOAWAY and RST_STREAM error codes (RFC 9113 §7).
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a GOAWAY or RST_STREAM.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            GOAWAY => 4,
            RST_STREAM => 0,
            _ => return None,
        };
        let bytes = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }
}

/// A client connection speaking raw frames (h2c, prior knowledge).
pub struct H2Raw {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl H2Raw {
    /// Connects and sends the preface and an empty SETTINGS frame.
    pub async fn connect(addr: SocketAddr) -> H2Raw {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .expect("preface");
        let mut raw = H2Raw {
            stream,
            buffer: Vec::new(),
        };
        raw.send(SETTINGS, 0, 0, &[]).await;
        raw
    }

    /// Writes one frame; a write error (the server closed) is ignored, the
    /// reads that follow see the end.
    pub async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let _ = self
            .stream
            .write_all(&frame(kind, flags, stream, payload))
            .await;
    }

    /// Writes many frames in one go (a flood); stops at the first error.
    pub async fn send_all(&mut self, frames: &[u8]) -> bool {
        self.stream.write_all(frames).await.is_ok()
    }

    /// Reads frames (acknowledging the server's SETTINGS and PINGs) until `done`
    /// holds for one, the connection ends, or `within` passes; returns
    /// every frame read.
    pub async fn read_until(
        &mut self,
        within: Duration,
        done: impl Fn(&Frame) -> bool,
    ) -> Vec<Frame> {
        let mut frames = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(frame) = self.take_frame() {
                if frame.kind == SETTINGS && frame.flags & ACK == 0 {
                    self.send(SETTINGS, ACK, 0, &[]).await;
                }
                if frame.kind == PING && frame.flags & ACK == 0 {
                    let payload = frame.payload.clone();
                    self.send(PING, ACK, 0, &payload).await;
                }
                let finished = done(&frame);
                frames.push(frame);
                if finished {
                    return frames;
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buffer.extend_from_slice(&chunk[..n]),
                _ => return frames,
            }
        }
    }

    /// The frames that the next single read from the socket completes
    /// (with any left over from earlier reads), or none when nothing comes
    /// within `within`.
    pub async fn read_once(&mut self, within: Duration) -> Vec<Frame> {
        let mut chunk = vec![0u8; 256 * 1024];
        if let Ok(Ok(n)) = tokio::time::timeout(within, self.stream.read(&mut chunk)).await {
            self.buffer.extend_from_slice(&chunk[..n]);
        }
        std::iter::from_fn(|| self.take_frame()).collect()
    }

    fn take_frame(&mut self) -> Option<Frame> {
        if self.buffer.len() < 9 {
            return None;
        }
        let len = usize::from(self.buffer[0]) << 16
            | usize::from(self.buffer[1]) << 8
            | usize::from(self.buffer[2]);
        if self.buffer.len() < 9 + len {
            return None;
        }
        let head: Vec<u8> = self.buffer.drain(..9 + len).collect();
        Some(Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload: head[9..].to_vec(),
        })
    }
}

/// One frame's bytes.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("frame length");
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A header block of literal fields, never indexed, names and values as
/// given (HPACK, RFC 7541 §6.2.2), so that any bytes at all can be sent.
pub fn header_block(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x10);
        string(&mut out, name);
        string(&mut out, value);
    }
    out
}

/// An HPACK string literal, not Huffman-coded (RFC 7541 §5.2).
fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut len = bytes.len();
    if len < 127 {
        out.push(u8::try_from(len).expect("short"));
    } else {
        out.push(127);
        len -= 127;
        while len >= 128 {
            out.push(u8::try_from(len % 128).expect("7 bits") | 0x80);
            len /= 128;
        }
        out.push(u8::try_from(len).expect("7 bits"));
    }
    out.extend_from_slice(bytes);
}

/// The pseudo-header fields of a request for `path` on `authority`.
pub fn request_fields<'a>(
    method: &'a [u8],
    authority: &'a [u8],
    path: &'a [u8],
) -> Vec<(&'a [u8], &'a [u8])> {
    vec![
        (b":method".as_slice(), method),
        (b":scheme".as_slice(), b"http".as_slice()),
        (b":authority".as_slice(), authority),
        (b":path".as_slice(), path),
    ]
}
