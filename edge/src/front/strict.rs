//! A strict reader in front of hyper's HTTP/1 parser.
//!
//! hyper accepts some request framings that RFC 9112 lets a server reject
//! and that proxies have been smuggled through: Content-Length together
//! with Transfer-Encoding (it drops the Content-Length), codings other than
//! a lone `chunked`, bare LF line ends, chunk extensions of any syntax, and
//! a missing Host. [`Strict`] wraps a client connection and follows its
//! messages byte by byte: each request head is held back until it is
//! complete and checked, each body is followed through its framing (and
//! passed on as it comes), and the first chunk-size line of a chunked body,
//! when it arrived with the head, is checked before the head is released.
//!
//! A request that fails is never seen by the service: hyper gets, in its
//! place, a request line it rejects itself (400, or 431 for a head over
//! the limit), answers it, and closes the connection; nothing more is read.
//! After a request with `Upgrade`, the reader waits for the answer: a `101`
//! turns the connection into an opaque tunnel, anything else resumes
//! checking. A connection that opens with the HTTP/2 preface is left to
//! hyper's HTTP/2 server, its frames followed both ways: control frame
//! floods are cut off, and interim responses go out on their streams (see
//! [`crate::front::interim`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::front::interim::Interim;

/// Longest request head accepted (request line and fields); hyper's own
/// buffer limit is set to the same.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in a head; hyper's `max_headers` is the same.
pub const MAX_FIELDS: usize = 100;
/// Longest chunk-size line (with extensions), and all trailers together.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// What hyper gets instead of a bad request: a method that is not a
/// token, which it answers with 400 and a close.
const BAD_REQUEST: &[u8] = b"\x01 / HTTP/1.1\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The first bytes: the HTTP/2 preface, or a request head.
    Start,
    /// Collecting a request head (held back until checked).
    Head,
    /// Content-Length bytes still to pass.
    Body {
        left: u64,
        then: After,
    },
    /// A chunk-size line (held back until checked, max MAX_CHUNK_LINE).
    ChunkLine {
        then: After,
    },
    /// Chunk data still to pass, then its CRLF.
    ChunkData {
        left: u64,
        then: After,
    },
    ChunkEnd {
        seen: u8,
        then: After,
    },
    /// Trailer fields after the last chunk, up to the empty line.
    Trailers {
        size: usize,
        then: After,
    },
    /// A request with Upgrade was read: wait for the answer's status.
    AwaitUpgrade,
    /// An HTTP/2 connection: frames pass, PING and SETTINGS are counted.
    H2,
    /// Opaque bytes: an upgraded connection.
    Tunnel,
    /// A bad request was replaced; nothing more is read.
    Rejected,
}

/// Where a message's body leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    NextHead,
    Upgrade,
}

/// Why a request was refused (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    BareLineFeed,
    BadHead,
    TooManyFields,
    HeadTooLarge,
    ContentLengthWithTransferEncoding,
    BadContentLength,
    UnsupportedTransferEncoding,
    TransferEncodingOnHttp10,
    MissingHost,
    MoreThanOneHost,
    BadChunkLine,
    BadChunkEnd,
    BadTrailers,
    ControlFrameFlood,
}

/// PING and SETTINGS frames a client may send at once, and per second
/// after that. A flood of them costs the server an answer each; h2 answers
/// one at a time, so memory is safe, but the work is not.
const CONTROL_BURST: f64 = 1000.0;
const CONTROL_PER_SECOND: f64 = 100.0;

/// Follows the HTTP/2 frames a client sends (after the preface) on their
/// way to h2: PING and SETTINGS frames that ask for an answer are counted;
/// the header block of each request that opens a stream gets, at its end
/// (inside the frame that ends it, before any padding), a field naming the
/// stream (see [`crate::front::interim`]); resets and the client's HPACK table
/// size are told to the interim queue.
struct FrameScan {
    /// The current frame's header, held back until complete.
    header: FrameHeader,
    /// Payload bytes of the current frame (as the client sent it) still to
    /// pass.
    skip: u64,
    tokens: f64,
    refilled: std::time::Instant,
    /// The highest stream a request opened: HEADERS on a higher one open
    /// the next (RFC 9113 §5.1.1); on a lower one they are trailers.
    last_stream: u32,
    /// A request's header block goes on in CONTINUATION frames.
    continuing: Option<u32>,
    /// The field naming the stream, to go into the current frame.
    tag: Option<Tag>,
    /// In a SETTINGS frame's payload: the current setting's bytes.
    setting: Option<([u8; 6], usize)>,
    interim: Interim,
}

/// A stream-naming field on its way into a frame's payload.
struct Tag {
    bytes: Vec<u8>,
    /// Goes in when this many of the frame's payload bytes are left (its
    /// padding), once known.
    before: Option<u64>,
}

const FRAME_HEADERS: u8 = 0x1;
const FRAME_RST_STREAM: u8 = 0x3;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_PUSH_PROMISE: u8 = 0x5;
const FRAME_PING: u8 = 0x6;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
/// SETTINGS_HEADER_TABLE_SIZE and its initial value (RFC 9113 §6.5.2).
const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
const DEFAULT_HEADER_TABLE_SIZE: u32 = 4096;
/// The largest frame h2 accepts from a client (SETTINGS_MAX_FRAME_SIZE,
/// left at its initial value).
const MAX_FRAME: u64 = 16_384;

/// An HTTP/2 frame's 9-byte header (RFC 9113 §4.1), gathered across reads
/// or writes.
#[derive(Debug, Default)]
struct FrameHeader {
    bytes: [u8; 9],
    have: usize,
}

impl FrameHeader {
    /// Takes what it still lacks from `input` at `*at`; true once whole
    /// (the next call starts the next header).
    fn gather(&mut self, input: &[u8], at: &mut usize) -> bool {
        let n = (9 - self.have).min(input.len() - *at);
        self.bytes[self.have..self.have + n].copy_from_slice(&input[*at..*at + n]);
        self.have += n;
        *at += n;
        if self.have < 9 {
            return false;
        }
        self.have = 0;
        true
    }

    fn length(&self) -> u64 {
        u64::from(self.bytes[0]) << 16 | u64::from(self.bytes[1]) << 8 | u64::from(self.bytes[2])
    }

    fn kind(&self) -> u8 {
        self.bytes[3]
    }

    fn flags(&self) -> u8 {
        self.bytes[4]
    }

    fn stream(&self) -> u32 {
        u32::from_be_bytes([self.bytes[5], self.bytes[6], self.bytes[7], self.bytes[8]])
            & 0x7fff_ffff
    }
}

impl FrameScan {
    fn new(interim: Interim) -> Self {
        Self {
            header: FrameHeader::default(),
            skip: 0,
            tokens: CONTROL_BURST,
            refilled: std::time::Instant::now(),
            last_stream: 0,
            continuing: None,
            tag: None,
            setting: None,
            interim,
        }
    }

    /// Passes `bytes` to `out` as frames complete their headers; Err when a
    /// frame goes over the control budget (everything before it passed).
    fn feed(&mut self, bytes: &[u8], out: &mut BytesMut) -> Result<(), ()> {
        let mut at = 0;
        while at < bytes.len() {
            if self.skip > 0 {
                let mut n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len() - at);
                match &self.tag {
                    // A padded frame's first byte is its padding's length.
                    Some(Tag { before: None, .. }) => n = 1,
                    Some(Tag {
                        before: Some(left), ..
                    }) if self.skip > *left => {
                        n = n.min(usize::try_from(self.skip - left).unwrap_or(usize::MAX));
                    }
                    _ => {}
                }
                let payload = &bytes[at..at + n];
                out.extend_from_slice(payload);
                self.settings(payload);
                at += n;
                self.skip -= n as u64;
                if let Some(tag) = self.tag.as_mut()
                    && tag.before.is_none()
                {
                    tag.before = Some(u64::from(payload[0]).min(self.skip));
                }
                self.place_tag(out);
                if self.skip == 0 {
                    self.setting = None;
                }
                continue;
            }
            if !self.header.gather(bytes, &mut at) {
                continue;
            }
            self.frame_start()?;
            out.extend_from_slice(&self.header.bytes);
            self.skip =
                self.header.length() - self.tag.as_ref().map_or(0, |t| t.bytes.len() as u64);
            self.place_tag(out);
        }
        Ok(())
    }

    /// The tag goes in once only its frame's padding is left.
    fn place_tag(&mut self, out: &mut BytesMut) {
        if self
            .tag
            .as_ref()
            .is_some_and(|t| t.before.is_some_and(|left| self.skip <= left) || self.skip == 0)
            && let Some(tag) = self.tag.take()
        {
            out.extend_from_slice(&tag.bytes);
        }
    }

    /// A frame's header is complete (and may be changed before it passes).
    fn frame_start(&mut self) -> Result<(), ()> {
        let (kind, flags) = (self.header.kind(), self.header.flags());
        let stream = self.header.stream();
        let asks_answer = matches!(kind, FRAME_SETTINGS | FRAME_PING) && flags & FLAG_ACK == 0;
        if asks_answer && !self.take_token() {
            return Err(());
        }
        let ends_block = flags & FLAG_END_HEADERS != 0;
        let tagged = match kind {
            FRAME_HEADERS if stream % 2 == 1 && stream > self.last_stream => {
                self.last_stream = stream;
                if !ends_block {
                    self.continuing = Some(stream);
                }
                ends_block
            }
            FRAME_CONTINUATION if ends_block && self.continuing == Some(stream) => {
                self.continuing = None;
                true
            }
            FRAME_RST_STREAM => {
                self.interim.finished(stream);
                false
            }
            FRAME_SETTINGS if flags & FLAG_ACK == 0 => {
                self.setting = Some(([0; 6], 0));
                false
            }
            _ => false,
        };
        if tagged && let Some(bytes) = self.interim.stream_field(stream) {
            let length = self.header.length() + bytes.len() as u64;
            // A frame that would grow past the limit keeps its block as it
            // is: that request gets no interim responses.
            if length <= MAX_FRAME {
                self.header.bytes[..3].copy_from_slice(&(length as u32).to_be_bytes()[1..]);
                let padded = kind == FRAME_HEADERS && flags & FLAG_PADDED != 0;
                self.tag = Some(Tag {
                    bytes,
                    before: if padded { None } else { Some(0) },
                });
            }
        }
        Ok(())
    }

    /// Follows a SETTINGS frame's payload: a client that makes its HPACK
    /// table smaller than the default gets no interim responses, since h2
    /// must open its next header block with the size (RFC 7541 §4.2).
    fn settings(&mut self, payload: &[u8]) {
        let Some((entry, have)) = self.setting.as_mut() else {
            return;
        };
        for byte in payload {
            entry[*have] = *byte;
            *have += 1;
            if *have == 6 {
                *have = 0;
                let id = u16::from_be_bytes([entry[0], entry[1]]);
                let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
                if id == SETTINGS_HEADER_TABLE_SIZE && value < DEFAULT_HEADER_TABLE_SIZE {
                    self.interim.turn_off();
                }
            }
        }
    }

    fn take_token(&mut self) -> bool {
        let now = std::time::Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * CONTROL_PER_SECOND).min(CONTROL_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Follows the HTTP/2 frames h2 writes, to find where an interim HEADERS
/// frame may go: between frames, after the server's first (its SETTINGS),
/// and outside a header block (RFC 9113 §6.10). A stream's own HEADERS or
/// RST_STREAM ends its interim responses. It sees what is written once the
/// client's preface has been read; on a TLS connection where ALPN chose h2,
/// h2 writes and flushes its SETTINGS before it reads the preface, so the
/// first bytes it sees still begin a frame.
struct OutScan {
    header: FrameHeader,
    skip: u64,
    started: bool,
    in_block: bool,
    interim: Interim,
}

impl OutScan {
    fn new(interim: Interim) -> Self {
        Self {
            header: FrameHeader::default(),
            skip: 0,
            started: false,
            in_block: false,
            interim,
        }
    }

    fn at_boundary(&self) -> bool {
        self.started && !self.in_block && self.header.have == 0 && self.skip == 0
    }

    /// How much of a write may go before the next frame boundary.
    fn room(&self) -> usize {
        if self.skip > 0 {
            usize::try_from(self.skip).unwrap_or(usize::MAX)
        } else {
            9 - self.header.have
        }
    }

    /// h2 wrote `bytes`.
    fn advance(&mut self, bytes: &[u8]) {
        let mut at = 0;
        while at < bytes.len() {
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len() - at);
                at += n;
                self.skip -= n as u64;
                if self.skip == 0 {
                    self.started = true;
                }
                continue;
            }
            if !self.header.gather(bytes, &mut at) {
                continue;
            }
            let (kind, flags) = (self.header.kind(), self.header.flags());
            match kind {
                FRAME_HEADERS | FRAME_PUSH_PROMISE | FRAME_CONTINUATION => {
                    self.in_block = flags & FLAG_END_HEADERS == 0;
                    if kind == FRAME_HEADERS {
                        self.interim.finished(self.header.stream());
                    }
                }
                FRAME_RST_STREAM => self.interim.finished(self.header.stream()),
                _ => {}
            }
            self.skip = self.header.length();
            if self.skip == 0 {
                self.started = true;
            }
        }
    }
}

pub struct Strict<T> {
    inner: T,
    /// Interim responses to write, and the one being written.
    interim: Interim,
    sending: bytes::Bytes,
    /// Everything hyper wrote has been flushed: its output is between
    /// messages.
    flushed: bool,
    state: State,
    /// Read but not yet checked.
    pending: BytesMut,
    /// Checked, waiting for hyper to read.
    ready: BytesMut,
    eof: bool,
    violation: Option<Violation>,
    /// hyper's read, parked on the socket while bytes are held back; woken
    /// when an answer's status releases them.
    reader: Option<std::task::Waker>,
    /// How long a request head may take, from the connection's start or
    /// from a head's first byte.
    head_timeout: std::time::Duration,
    /// Running while a head is awaited or arriving.
    head_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// HTTP/2 frames, once the preface is seen: the client's and h2's.
    frames: FrameScan,
    out: OutScan,
    /// The connection speaks HTTP/2 (it opened with the preface).
    h2: bool,
    /// The length of a write of hyper's that the socket left pending: TLS
    /// has already sealed those bytes, and the next write must begin with
    /// them, whole, before anything of ours.
    held: usize,
}

impl<T> Strict<T> {
    /// Wraps a client connection; a request head (the first one counted
    /// from the connection's start, later ones from their first byte) must
    /// arrive within `head_timeout`, or the connection is closed.
    pub fn new(inner: T, head_timeout: std::time::Duration) -> Self {
        let interim = Interim::default();
        Self {
            sending: bytes::Bytes::new(),
            flushed: true,
            head_timeout,
            head_deadline: Some(Box::pin(tokio::time::sleep(head_timeout))),
            frames: FrameScan::new(interim.clone()),
            out: OutScan::new(interim.clone()),
            interim,
            h2: false,
            held: 0,
            inner,
            state: State::Start,
            pending: BytesMut::new(),
            ready: BytesMut::new(),
            eof: false,
            violation: None,
            reader: None,
        }
    }

    /// The queue of interim responses written on this connection.
    pub fn interim(&self) -> Interim {
        self.interim.clone()
    }

    /// Starts the head clock at a head's first byte, and stops it once
    /// the head is through.
    fn time_heads(&mut self) {
        match self.state {
            State::Start => {}
            State::Head if !self.pending.is_empty() => {
                if self.head_deadline.is_none() {
                    self.head_deadline = Some(Box::pin(tokio::time::sleep(self.head_timeout)));
                }
            }
            _ => self.head_deadline = None,
        }
    }

    /// Why the connection's last request was refused, if it was.
    #[cfg(test)]
    pub fn violation(&self) -> Option<Violation> {
        self.violation
    }

    /// An HTTP/2 client sent PING or SETTINGS frames faster than the
    /// budget: the flood frame is replaced by a PING of the wrong size,
    /// which h2 answers with GOAWAY (FRAME_SIZE_ERROR) before it closes;
    /// nothing more is read.
    fn flood(&mut self) {
        tracing::debug!("HTTP/2 control frame flood; closing the connection");
        self.violation = Some(Violation::ControlFrameFlood);
        self.pending.clear();
        self.ready
            .extend_from_slice(&[0, 0, 7, 0x6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        self.state = State::Rejected;
    }

    /// hyper writes `data`; while an Upgrade request waits, the start of
    /// its answer says what the connection becomes: 101 opens a tunnel,
    /// anything else means the held-back bytes are the next request.
    fn answer_started(&mut self, data: &[u8]) {
        if self.state != State::AwaitUpgrade || data.len() < 12 || !data.starts_with(b"HTTP/1.1 ") {
            return;
        }
        self.state = if &data[9..12] == b"101" {
            State::Tunnel
        } else {
            State::Head
        };
        self.advance();
        if !self.ready.is_empty()
            && let Some(reader) = self.reader.take()
        {
            reader.wake();
        }
    }

    /// Moves what can be checked from `pending` to `ready`.
    fn advance(&mut self) {
        loop {
            let progressed = match self.state {
                State::Start => self.start(),
                State::Head => self.head(),
                State::Body { left, then } => {
                    let n = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(self.pending.len());
                    self.pass(n);
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        self.after(then)
                    } else {
                        State::Body { left, then }
                    };
                    n > 0 || left == 0
                }
                State::ChunkLine { then } => self.chunk_line(then),
                State::ChunkData { left, then } => {
                    let n = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(self.pending.len());
                    self.pass(n);
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::ChunkEnd { seen: 0, then }
                    } else {
                        State::ChunkData { left, then }
                    };
                    n > 0
                }
                State::ChunkEnd { seen, then } => self.chunk_end(seen, then),
                State::Trailers { size, then } => self.trailers(size, then),
                State::AwaitUpgrade => {
                    // A client waits for 101 before it sends more; one
                    // that does not is not upgrading.
                    if self.pending.len() > MAX_HEAD {
                        self.reject(Violation::BadHead);
                    }
                    false
                }
                State::Rejected => false,
                State::Tunnel => {
                    let n = self.pending.len();
                    self.pass(n);
                    false
                }
                State::H2 => {
                    let pending = self.pending.split();
                    if self.frames.feed(&pending, &mut self.ready).is_err() {
                        self.flood();
                    }
                    false
                }
            };
            if !progressed {
                return;
            }
        }
    }

    fn after(&self, then: After) -> State {
        match then {
            After::NextHead => State::Head,
            After::Upgrade => State::AwaitUpgrade,
        }
    }

    fn pass(&mut self, n: usize) {
        let bytes = self.pending.split_to(n);
        self.ready.extend_from_slice(&bytes);
    }

    fn reject(&mut self, violation: Violation) -> bool {
        tracing::debug!(?violation, "refusing a malformed request");
        self.violation = Some(violation);
        self.pending.clear();
        if matches!(
            violation,
            Violation::HeadTooLarge | Violation::TooManyFields
        ) {
            // A head start hyper's buffer limit cannot hold: it answers 431.
            self.ready.extend_from_slice(b"GET / HTTP/1.1\r\nx: ");
            self.ready.resize(self.ready.len() + MAX_HEAD + 1, b'a');
        } else {
            self.ready.extend_from_slice(BAD_REQUEST);
        }
        self.state = State::Rejected;
        false
    }

    fn start(&mut self) -> bool {
        let n = self.pending.len().min(PREFACE.len());
        if self.pending[..n] != PREFACE[..n] {
            self.state = State::Head;
            return true;
        }
        if n == PREFACE.len() {
            self.pass(PREFACE.len());
            self.state = State::H2;
            self.h2 = true;
            self.interim.set_h2();
            return true;
        }
        false
    }

    fn head(&mut self) -> bool {
        // RFC 9112 §2.2: empty lines before the request line are ignored.
        while self.pending.starts_with(b"\r\n") {
            self.pending.advance(2);
        }
        let Some(end) = find(&self.pending, b"\r\n\r\n") else {
            if self.pending.len() > MAX_HEAD {
                return self.reject(Violation::HeadTooLarge);
            }
            // A bare LF ends no line: refuse as soon as one shows.
            if has_bare_lf(&self.pending) {
                return self.reject(Violation::BareLineFeed);
            }
            return false;
        };
        let head_len = end + 4;
        if head_len > MAX_HEAD {
            return self.reject(Violation::HeadTooLarge);
        }
        if has_bare_lf(&self.pending[..head_len]) {
            return self.reject(Violation::BareLineFeed);
        }
        let framing = match check_head(&self.pending[..head_len]) {
            Ok(framing) => framing,
            Err(violation) => return self.reject(violation),
        };
        let then = if framing.upgrade {
            After::Upgrade
        } else {
            After::NextHead
        };
        if framing.chunked {
            // The first chunk line, if it came with the head, is checked
            // before the head goes on: a bad one never reaches the origin.
            let body = &self.pending[head_len..];
            if let Some(lf) = body.iter().position(|b| *b == b'\n')
                && parse_chunk_line(&body[..=lf]).is_err()
            {
                return self.reject(Violation::BadChunkLine);
            }
            self.pass(head_len);
            self.state = State::ChunkLine { then };
        } else {
            self.pass(head_len);
            self.state = match framing.length {
                Some(left) if left > 0 => State::Body { left, then },
                _ => self.after(then),
            };
        }
        true
    }

    fn chunk_line(&mut self, then: After) -> bool {
        let Some(lf) = self.pending.iter().position(|b| *b == b'\n') else {
            if self.pending.len() > MAX_CHUNK_LINE {
                return self.reject(Violation::BadChunkLine);
            }
            return false;
        };
        if lf + 1 > MAX_CHUNK_LINE {
            return self.reject(Violation::BadChunkLine);
        }
        match parse_chunk_line(&self.pending[..=lf]) {
            Ok(0) => {
                self.pass(lf + 1);
                self.state = State::Trailers { size: 0, then };
            }
            Ok(size) => {
                self.pass(lf + 1);
                self.state = State::ChunkData { left: size, then };
            }
            Err(()) => return self.reject(Violation::BadChunkLine),
        }
        true
    }

    fn chunk_end(&mut self, seen: u8, then: After) -> bool {
        let Some(&byte) = self.pending.first() else {
            return false;
        };
        let expected = if seen == 0 { b'\r' } else { b'\n' };
        if byte != expected {
            return self.reject(Violation::BadChunkEnd);
        }
        self.pass(1);
        self.state = if seen == 0 {
            State::ChunkEnd { seen: 1, then }
        } else {
            State::ChunkLine { then }
        };
        true
    }

    fn trailers(&mut self, size: usize, then: After) -> bool {
        let Some(lf) = self.pending.iter().position(|b| *b == b'\n') else {
            if size + self.pending.len() > MAX_TRAILERS {
                return self.reject(Violation::BadTrailers);
            }
            return false;
        };
        let line = &self.pending[..=lf];
        if line.len() < 2 || line[line.len() - 2] != b'\r' || size + line.len() > MAX_TRAILERS {
            return self.reject(Violation::BadTrailers);
        }
        if line == b"\r\n" {
            self.pass(2);
            self.state = self.after(then);
            return true;
        }
        if !is_field_line(&line[..line.len() - 2]) {
            return self.reject(Violation::BadTrailers);
        }
        let n = line.len();
        self.pass(n);
        self.state = State::Trailers {
            size: size + n,
            then,
        };
        true
    }
}

/// How a checked head frames its body.
#[derive(Debug, Default)]
struct Framing {
    length: Option<u64>,
    chunked: bool,
    upgrade: bool,
}

/// Checks a complete head (ending in CRLF CRLF, no bare LF).
fn check_head(head: &[u8]) -> Result<Framing, Violation> {
    // RFC 9112 §5.2: a field line starting with white space is obs-fold;
    // httparse refuses it, and so does every other check of field syntax.
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut request = httparse::Request::new(&mut fields);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Violation::BadHead),
        Err(httparse::Error::TooManyHeaders) => return Err(Violation::TooManyFields),
        Err(_) => return Err(Violation::BadHead),
    }
    let http10 = request.version == Some(0);
    let mut framing = Framing::default();
    let mut te: Option<Vec<u8>> = None;
    let mut hosts = 0;
    for field in request.headers.iter() {
        let name = field.name;
        if name.eq_ignore_ascii_case("content-length") {
            // RFC 9110 §8.6: 1*DIGIT; repeated lines must agree.
            let value = trim(field.value);
            if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
                return Err(Violation::BadContentLength);
            }
            let n: u64 = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or(Violation::BadContentLength)?;
            if framing.length.is_some_and(|previous| previous != n) {
                return Err(Violation::BadContentLength);
            }
            framing.length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let joined = te.get_or_insert_with(Vec::new);
            if !joined.is_empty() {
                joined.push(b',');
            }
            joined.extend_from_slice(field.value);
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("upgrade") {
            framing.upgrade = true;
        }
    }
    if let Some(te) = te {
        // RFC 9112 §6.1: none on HTTP/1.0; the final coding must be chunked,
        // and as no other coding is decoded here, chunked must be alone.
        if http10 {
            return Err(Violation::TransferEncodingOnHttp10);
        }
        // RFC 9112 §6.3: both framings at once is how requests are smuggled.
        if framing.length.is_some() {
            return Err(Violation::ContentLengthWithTransferEncoding);
        }
        if !trim(&te).eq_ignore_ascii_case(b"chunked") {
            return Err(Violation::UnsupportedTransferEncoding);
        }
        framing.chunked = true;
    }
    // RFC 9112 §3.2: exactly one Host in HTTP/1.1.
    match hosts {
        0 if !http10 => return Err(Violation::MissingHost),
        0 | 1 => {}
        _ => return Err(Violation::MoreThanOneHost),
    }
    if request.method == Some("CONNECT") {
        framing.upgrade = true;
    }
    Ok(framing)
}

/// RFC 9112 §7.1: `chunk-size [ chunk-ext ] CRLF`, with
/// `chunk-ext = *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )`.
fn parse_chunk_line(line: &[u8]) -> Result<u64, ()> {
    let line = line.strip_suffix(b"\r\n").ok_or(())?;
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(());
    }
    let size = u64::from_str_radix(std::str::from_utf8(&line[..digits]).map_err(|_| ())?, 16)
        .map_err(|_| ())?;
    let mut rest = &line[digits..];
    loop {
        if rest.is_empty() {
            return Ok(size);
        }
        rest = skip_bws(rest).strip_prefix(b";").ok_or(())?;
        rest = skip_bws(rest);
        let name = token_len(rest);
        if name == 0 {
            return Err(());
        }
        rest = skip_bws(&rest[name..]);
        if let Some(value) = rest.strip_prefix(b"=") {
            let value = skip_bws(value);
            rest = if value.first() == Some(&b'"') {
                &value[quoted_len(value).ok_or(())?..]
            } else {
                let n = token_len(value);
                if n == 0 {
                    return Err(());
                }
                &value[n..]
            };
        }
        // What follows must be BWS, another extension or the end.
        if !rest.is_empty() && !matches!(rest[0], b' ' | b'\t' | b';') {
            return Err(());
        }
    }
}

fn skip_bws(bytes: &[u8]) -> &[u8] {
    let n = bytes
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count();
    &bytes[n..]
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn token_len(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| is_tchar(**b)).count()
}

/// Length of a quoted-string at the start of `bytes` (RFC 9110 §5.6.4).
fn quoted_len(bytes: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Some(i + 1),
            b'\\' => {
                let escaped = *bytes.get(i + 1)?;
                if !(escaped == b'\t' || (0x20..=0x7e).contains(&escaped) || escaped >= 0x80) {
                    return None;
                }
                i += 2;
            }
            b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => i += 1,
            _ => return None,
        }
    }
    None
}

/// `field-name ":" OWS field-value OWS` with no control characters.
fn is_field_line(line: &[u8]) -> bool {
    let name = token_len(line);
    if name == 0 || line.get(name) != Some(&b':') {
        return false;
    }
    line[name + 1..]
        .iter()
        .all(|b| *b == b'\t' || (0x20..=0x7e).contains(b) || *b >= 0x80)
}

fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &value[start..end.max(start)]
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn has_bare_lf(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .any(|(i, b)| *b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
}

impl<T: AsyncWrite + Unpin> Strict<T> {
    /// Writes the interim responses queued, where hyper's output allows
    /// (HTTP/1: between messages, once flushed; HTTP/2: between frames,
    /// outside a header block) or finishes one already begun; Ready once
    /// none is left to write now.
    fn send_interim(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Tunnels carry none (and must never get HTTP bytes of ours).
        if self.state == State::Tunnel {
            return Poll::Ready(Ok(()));
        }
        let mut wrote = false;
        loop {
            if !self.sending.is_empty() {
                let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.sending))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.sending.advance(n);
                wrote = true;
                continue;
            }
            self.interim.register(cx.waker());
            let free = if self.h2 {
                self.state == State::H2 && self.held == 0 && self.out.at_boundary()
            } else {
                self.flushed
            };
            match free.then(|| self.interim.next()).flatten() {
                Some(head) => self.sending = head,
                None => break,
            }
        }
        if wrote {
            // Out now (TLS buffers otherwise), not with the final answer.
            let _ = Pin::new(&mut self.inner).poll_flush(cx)?;
        }
        Poll::Ready(Ok(()))
    }

    /// How much of a write of `len` bytes may go now: on HTTP/2, while
    /// interim responses wait, no further than the end of the current frame.
    fn allowed(&self, len: usize) -> usize {
        if self.state == State::H2
            && self.held == 0
            && self.interim.pending()
            && !self.out.at_boundary()
        {
            len.min(self.out.room())
        } else {
            len
        }
    }

    /// hyper's write of `len` bytes went (Ready) or was left pending.
    fn wrote<R>(&mut self, len: usize, result: &Poll<io::Result<R>>) {
        self.held = if result.is_pending() { len } else { 0 };
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Strict<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // hyper reads while a request is answered (to notice a client
        // going away): the moment to send its interim responses. A socket
        // too full to take them now is tried again on its next read or write.
        if let Poll::Ready(Err(e)) = this.send_interim(cx) {
            return Poll::Ready(Err(e));
        }
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof || this.state == State::Rejected {
                // End of stream: hyper answers what it has and closes.
                return Poll::Ready(Ok(()));
            }
            if this.state == State::Tunnel && this.pending.is_empty() {
                // An upgraded connection: nothing to check; read straight
                // into the caller's buffer.
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            // Not zeroed: the read writes what it reports.
            let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); 16 * 1024];
            let mut read = ReadBuf::uninit(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => {
                    this.reader = Some(cx.waker().clone());
                    // Slowloris: a head that does not finish in time ends
                    // the connection (hyper sees the end of the stream).
                    if let Some(deadline) = this.head_deadline.as_mut()
                        && deadline.as_mut().poll(cx).is_ready()
                    {
                        tracing::debug!("a request head took too long; closing");
                        this.head_deadline = None;
                        this.pending.clear();
                        this.state = State::Rejected;
                        return Poll::Ready(Ok(()));
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    if read.filled().is_empty() {
                        // What was held back never completed a checked
                        // unit: hyper sees the end where the last one did.
                        this.eof = true;
                        this.pending.clear();
                        continue;
                    }
                    this.pending.extend_from_slice(read.filled());
                    this.advance();
                    this.time_heads();
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Strict<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.send_interim(cx))?;
        this.answer_started(data);
        this.flushed = false;
        let data = &data[..this.allowed(data.len())];
        let result = Pin::new(&mut this.inner).poll_write(cx, data);
        this.wrote(data.len(), &result);
        let n = ready!(result)?;
        if this.state == State::H2 {
            this.out.advance(&data[..n.min(data.len())]);
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.send_interim(cx))?;
        let Some(first) = bufs.iter().find(|b| !b.is_empty()) else {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        };
        this.answer_started(first);
        this.flushed = false;
        if this.state != State::H2 {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if this.allowed(total) < total {
            // Up to the frame's end, where the interim frames go.
            let data = &first[..this.allowed(first.len())];
            let result = Pin::new(&mut this.inner).poll_write(cx, data);
            this.wrote(data.len(), &result);
            let n = ready!(result)?;
            this.out.advance(&data[..n.min(data.len())]);
            return Poll::Ready(Ok(n));
        }
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(total, &result);
        let n = ready!(result)?;
        let mut left = n;
        for buf in bufs {
            if left == 0 {
                break;
            }
            let take = left.min(buf.len());
            this.out.advance(&buf[..take]);
            left -= take;
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        this.flushed = true;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // An interim response begun is finished: never half a frame.
        while !this.sending.is_empty() {
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &this.sending))?;
            if n == 0 {
                break;
            }
            this.sending.advance(n);
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// What hyper would read after the client sent `input` and closed.
    async fn through(input: &[u8]) -> (Vec<u8>, Option<Violation>) {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client.write_all(input).await.unwrap();
        client.shutdown().await.unwrap();
        let mut strict = Strict::new(server, std::time::Duration::from_secs(30));
        let mut out = Vec::new();
        strict.read_to_end(&mut out).await.unwrap();
        (out, strict.violation())
    }

    async fn refused(input: &str) -> Violation {
        let (out, violation) = through(input.as_bytes()).await;
        assert!(
            out.ends_with(BAD_REQUEST) || out.len() > MAX_HEAD,
            "{input:?} went through as {:?}",
            String::from_utf8_lossy(&out)
        );
        violation.expect("a violation")
    }

    async fn accepted(input: &str) {
        let (out, violation) = through(input.as_bytes()).await;
        assert_eq!(violation, None, "{input:?}");
        assert_eq!(String::from_utf8_lossy(&out), input);
    }

    #[tokio::test]
    async fn well_formed_requests_pass_unchanged() {
        accepted("GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
        accepted("GET /x HTTP/1.1\r\nHost: a\r\n\r\nGET /y HTTP/1.1\r\nHost: a\r\n\r\n").await;
        // RFC 9112 §2.2: an empty line before a request line is dropped.
        let (out, _) = through(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert_eq!(out, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        accepted("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
        accepted(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b;c=\"d;\\\"e\"\r\nhello\r\n0\r\nx-sum: 1\r\n\r\n",
        )
        .await;
        accepted("GET / HTTP/1.0\r\n\r\n").await;
    }

    /// PING and SETTINGS past the budget are cut at a frame boundary and
    /// replaced by a frame h2 refuses with GOAWAY; ACKs and other frames
    /// are not counted.
    #[tokio::test]
    async fn an_h2_control_frame_flood_is_cut_off() {
        let ping = |flags: u8| {
            let mut f = vec![0, 0, 8, 0x6, flags, 0, 0, 0, 0];
            f.extend_from_slice(&[1; 8]);
            f
        };
        let mut calm = PREFACE.to_vec();
        for _ in 0..500 {
            calm.extend_from_slice(&ping(0));
            calm.extend_from_slice(&ping(1));
        }
        let (out, violation) = through(&calm).await;
        assert_eq!((out.len(), violation), (calm.len(), None));

        let mut flood = PREFACE.to_vec();
        for _ in 0..5_000 {
            flood.extend_from_slice(&ping(0));
        }
        let (out, violation) = through(&flood).await;
        assert_eq!(violation, Some(Violation::ControlFrameFlood));
        let cut = PREFACE.len() + 1000 * 17;
        assert_eq!(&out[..cut], &flood[..cut], "the budget passes whole frames");
        assert_eq!(
            &out[cut..cut + 4],
            &[0, 0, 7, 0x6],
            "then a PING of the wrong size"
        );
        assert_eq!(out.len(), cut + 16);
    }

    fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        crate::front::interim::h2_frame_bytes(kind, flags, stream, payload)
    }

    /// The header block of each request that opens a stream ends with the
    /// field naming it, inside the frame that ends the block and before its
    /// padding; trailers and other frames pass as they came.
    #[tokio::test]
    async fn h2_requests_are_tagged_with_their_stream() {
        let mut input = PREFACE.to_vec();
        input.extend(h2_frame(0x4, 0, 0, &[]));
        input.extend(h2_frame(0x1, 0x4 | 0x1, 1, b"AB"));
        input.extend(h2_frame(0x1, 0x0, 3, b"CD"));
        input.extend(h2_frame(0x0, 0x0, 1, b"body"));
        input.extend(h2_frame(0x9, 0x4, 3, b"EF"));
        // Padded (2 bytes of padding), with priority.
        input.extend(h2_frame(0x1, 0x4 | 0x8 | 0x20, 5, b"\x02PPPPPGH\0\0"));
        // Trailers on stream 1: not a new request.
        input.extend(h2_frame(0x1, 0x4 | 0x1, 1, b"IJ"));

        for byte_by_byte in [false, true] {
            let (mut client, server) = tokio::io::duplex(1 << 16);
            let mut strict = Strict::new(server, std::time::Duration::from_secs(30));
            let conn = strict.interim();
            let tag = |stream| conn.stream_field(stream).unwrap();
            let mut expected = PREFACE.to_vec();
            expected.extend(h2_frame(0x4, 0, 0, &[]));
            expected.extend(h2_frame(
                0x1,
                0x4 | 0x1,
                1,
                &[b"AB".as_slice(), &tag(1)].concat(),
            ));
            expected.extend(h2_frame(0x1, 0x0, 3, b"CD"));
            expected.extend(h2_frame(0x0, 0x0, 1, b"body"));
            expected.extend(h2_frame(0x9, 0x4, 3, &[b"EF".as_slice(), &tag(3)].concat()));
            expected.extend(h2_frame(
                0x1,
                0x4 | 0x8 | 0x20,
                5,
                &[b"\x02PPPPPGH".as_slice(), &tag(5), b"\0\0"].concat(),
            ));
            expected.extend(h2_frame(0x1, 0x4 | 0x1, 1, b"IJ"));
            let input = input.clone();
            let feeder = tokio::spawn(async move {
                if byte_by_byte {
                    for byte in input {
                        client.write_all(&[byte]).await.unwrap();
                    }
                } else {
                    client.write_all(&input).await.unwrap();
                }
                client
            });
            let mut out = vec![0u8; expected.len()];
            strict.read_exact(&mut out).await.unwrap();
            drop(feeder.await.unwrap());
            assert_eq!(out, expected, "byte by byte: {byte_by_byte}");
            assert_eq!(strict.violation(), None);
        }
    }

    /// A frame the field would take past 16,384 bytes keeps its block as it
    /// is; once interim responses are off, nothing is added.
    #[tokio::test]
    async fn a_full_frame_is_not_tagged() {
        let big = vec![b'x'; 16_380];
        let mut input = PREFACE.to_vec();
        input.extend(h2_frame(0x1, 0x4 | 0x1, 1, &big));
        let (out, _) = through(&input).await;
        assert_eq!(out, input);
    }

    /// An interim HEADERS frame goes out between h2's frames, never inside
    /// one or inside a header block, and never after the stream's own
    /// HEADERS (RFC 9113 §8.1).
    #[tokio::test]
    async fn h2_interim_frames_go_between_frames_before_the_final_headers() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut strict = Strict::new(server, std::time::Duration::from_secs(30));
        let mut request = PREFACE.to_vec();
        request.extend(h2_frame(0x1, 0x4 | 0x1, 1, b"AB"));
        client.write_all(&request).await.unwrap();
        let tag = strict.interim().stream_field(1).unwrap();
        let mut seen = vec![0u8; PREFACE.len() + 9 + 2 + tag.len()];
        strict.read_exact(&mut seen).await.unwrap();

        let conn = strict.interim();
        let opened = conn.open_stream(1);
        let mut hints = http::HeaderMap::new();
        hints.insert("link", "</a.css>; rel=preload".parse().unwrap());
        // Nothing before the server's SETTINGS is whole.
        let settings = h2_frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]);
        strict.write_all(&settings[..12]).await.unwrap();
        opened.handle().send(http::StatusCode::EARLY_HINTS, &hints);
        let data = h2_frame(0x0, 0x0, 3, b"other stream");
        let mut rest = settings[12..].to_vec();
        rest.extend(&data);
        // One write of the rest of SETTINGS and a DATA frame: the interim
        // frame goes between them.
        let n = strict.write(&rest).await.unwrap();
        assert_eq!(n, settings.len() - 12, "stops at the frame's end");
        strict.write_all(&rest[n..]).await.unwrap();
        // A header block in pieces: nothing goes inside it.
        let second = conn.open_stream(5);
        let final_headers = h2_frame(0x1, 0x0, 1, b"final");
        strict.write_all(&final_headers).await.unwrap();
        second.handle().send(http::StatusCode::EARLY_HINTS, &hints);
        strict
            .write_all(&h2_frame(0x9, 0x4, 1, b"end"))
            .await
            .unwrap();
        // Stream 1 has its final HEADERS: a late interim is dropped.
        opened.handle().send(http::StatusCode::EARLY_HINTS, &hints);
        strict
            .write_all(&h2_frame(0x1, 0x4, 5, b"five"))
            .await
            .unwrap();
        strict.flush().await.unwrap();
        drop(strict);

        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        let block = crate::front::interim::early_hints_block();
        let mut expected = settings.clone();
        expected.extend(h2_frame(0x1, 0x4, 1, &block));
        expected.extend(&data);
        expected.extend(&final_headers);
        expected.extend(h2_frame(0x9, 0x4, 1, b"end"));
        expected.extend(h2_frame(0x1, 0x4, 5, &block));
        expected.extend(h2_frame(0x1, 0x4, 5, b"five"));
        assert_eq!(out, expected);
    }

    /// A socket that behaves like TLS under back-pressure: a write it
    /// leaves pending is sealed, and the next write must begin with those
    /// bytes (BoringSSL's SSL_R_BAD_WRITE_RETRY otherwise).
    #[derive(Default)]
    struct Sealing {
        input: Vec<u8>,
        block_next: bool,
        sealed: Option<Vec<u8>>,
        out: Vec<u8>,
        bad_retry: bool,
    }

    impl AsyncRead for Sealing {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.input.is_empty() {
                return Poll::Pending;
            }
            let n = self.input.len().min(buf.remaining());
            buf.put_slice(&self.input[..n]);
            self.input.drain(..n);
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Sealing {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            if let Some(record) = self.sealed.take() {
                if !data.starts_with(&record) {
                    self.bad_retry = true;
                }
                self.out.extend_from_slice(&record);
                return Poll::Ready(Ok(record.len()));
            }
            if std::mem::take(&mut self.block_next) {
                self.sealed = Some(data.to_vec());
                return Poll::Pending;
            }
            self.out.extend_from_slice(data);
            Poll::Ready(Ok(data.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// An interim response queued while a write of h2's is pending waits
    /// until that write is repeated and done, then goes at the next frame
    /// boundary.
    #[tokio::test]
    async fn interim_frames_wait_for_a_pending_write() {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        let socket = Sealing {
            input: PREFACE.to_vec(),
            ..Sealing::default()
        };
        let mut strict = Strict::new(socket, std::time::Duration::from_secs(30));
        let mut chunk = [0u8; 64];
        let mut buf = ReadBuf::new(&mut chunk);
        assert!(
            Pin::new(&mut strict)
                .poll_read(&mut cx, &mut buf)
                .is_ready()
        );
        let settings = h2_frame(0x4, 0, 0, &[]);
        assert!(matches!(
            Pin::new(&mut strict).poll_write(&mut cx, &settings),
            Poll::Ready(Ok(9))
        ));

        // A DATA frame's header is left pending, at a frame boundary.
        let data = h2_frame(0x0, 0x0, 3, b"payload");
        strict.inner.block_next = true;
        assert!(
            Pin::new(&mut strict)
                .poll_write(&mut cx, &data[..9])
                .is_pending()
        );
        let opened = strict.interim().open_stream(1);
        opened
            .handle()
            .send(http::StatusCode::EARLY_HINTS, &http::HeaderMap::new());
        // The connection's task is woken to write it: not now.
        let mut buf = ReadBuf::new(&mut chunk);
        assert!(
            Pin::new(&mut strict)
                .poll_read(&mut cx, &mut buf)
                .is_pending()
        );
        assert!(strict.interim().pending());
        // h2 repeats its write; then the payload; then the interim frame.
        assert!(matches!(
            Pin::new(&mut strict).poll_write(&mut cx, &data[..9]),
            Poll::Ready(Ok(9))
        ));
        assert!(matches!(
            Pin::new(&mut strict).poll_write(&mut cx, &data[9..]),
            Poll::Ready(Ok(7))
        ));
        let mut buf = ReadBuf::new(&mut chunk);
        assert!(
            Pin::new(&mut strict)
                .poll_read(&mut cx, &mut buf)
                .is_pending()
        );
        assert!(
            !strict.inner.bad_retry,
            "a pending write was not repeated as it was"
        );
        let mut expected = settings.clone();
        expected.extend(&data);
        expected.extend(h2_frame(0x1, 0x4, 1, b"\x08\x03103"));
        assert_eq!(strict.inner.out, expected);
    }

    /// RFC 7541 §4.2: after a client shrinks its HPACK table, h2's next
    /// header block must say so first, so interim frames stop.
    #[tokio::test]
    async fn a_smaller_hpack_table_turns_interim_frames_off() {
        let mut input = PREFACE.to_vec();
        input.extend(h2_frame(
            0x4,
            0,
            0,
            &[0, 4, 0, 0, 0xff, 0xff, 0, 1, 0, 0, 0, 0],
        ));
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut strict = Strict::new(server, std::time::Duration::from_secs(30));
        client.write_all(&input).await.unwrap();
        let mut seen = vec![0u8; input.len()];
        strict.read_exact(&mut seen).await.unwrap();
        let opened = strict.interim().open_stream(1);
        opened
            .handle()
            .send(http::StatusCode::EARLY_HINTS, &http::HeaderMap::new());
        assert!(!strict.interim().pending());
    }

    #[tokio::test]
    async fn the_h2_preface_is_left_alone() {
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00 anything\n");
        let (out, violation) = through(&input).await;
        assert_eq!((out, violation), (input, None));
    }

    /// RFC 9112 §6.1, §6.3: both framings, unknown codings, HTTP/1.0.
    #[tokio::test]
    async fn ambiguous_framing_is_refused() {
        use Violation::*;
        let cases = [
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                ContentLengthWithTransferEncoding,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
                ContentLengthWithTransferEncoding,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                UnsupportedTransferEncoding,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                UnsupportedTransferEncoding,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                UnsupportedTransferEncoding,
            ),
            (
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                TransferEncodingOnHttp10,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
                BadContentLength,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1,1\r\n\r\na",
                BadContentLength,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
                BadContentLength,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
                BadContentLength,
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(refused(input).await, expected, "{input:?}");
        }
    }

    /// RFC 9112 §2.2, §5.2, §3.2; RFC 9110 §5.5.
    #[tokio::test]
    async fn malformed_heads_are_refused() {
        use Violation::*;
        let cases = [
            ("GET / HTTP/1.1\nHost: a\n\n", BareLineFeed),
            ("GET / HTTP/1.1\r\nHost: a\n\r\n", BareLineFeed),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", BadHead),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", BadHead),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n",
                BadHead,
            ),
            ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", BadHead),
            ("GET / HTTP/1.1\r\n\r\n", MissingHost),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                MoreThanOneHost,
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(refused(input).await, expected, "{input:?}");
        }
        let many: String = (0..=MAX_FIELDS).map(|i| format!("x{i}: y\r\n")).collect();
        assert_eq!(
            refused(&format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n")).await,
            TooManyFields
        );
        let huge = "a".repeat(MAX_HEAD);
        let (out, violation) = through(format!("GET / HTTP/1.1\r\nX: {huge}").as_bytes()).await;
        assert_eq!(violation, Some(HeadTooLarge));
        assert!(out.len() > MAX_HEAD && out.starts_with(b"GET / HTTP/1.1\r\nx: a"));
    }

    /// RFC 9112 §7.1: chunk sizes and extensions.
    #[tokio::test]
    async fn malformed_chunks_are_refused() {
        let head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        for body in [
            "0x5\r\nhello\r\n0\r\n\r\n",
            "-5\r\nhello\r\n0\r\n\r\n",
            " 5\r\nhello\r\n0\r\n\r\n",
            "5 \r\nhello\r\n0\r\n\r\n",
            "10000000000000000\r\n",
            "5;\r\nhello\r\n0\r\n\r\n",
            "5;\"x\"\r\nhello\r\n0\r\n\r\n",
            "5;a=\"unterminated\r\nhello\r\n0\r\n\r\n",
            "5;a=b c\r\nhello\r\n0\r\n\r\n",
            "5\nhello\r\n0\r\n\r\n",
        ] {
            let input = format!("{head}{body}");
            let (out, violation) = through(input.as_bytes()).await;
            assert_eq!(violation, Some(Violation::BadChunkLine), "{body:?}");
            // The first chunk line came with the head: the head is held too.
            assert_eq!(out, BAD_REQUEST, "{body:?}");
        }
        // Later faults cut the body short; the head already went on.
        for (body, violation) in [
            ("5\r\nhelloXY0\r\n\r\n", Violation::BadChunkEnd),
            ("5\r\nhello\r\nzz\r\n", Violation::BadChunkLine),
            ("0\r\nbad trailer\r\n\r\n", Violation::BadTrailers),
            ("0\r\n\n", Violation::BadTrailers),
        ] {
            let input = format!("{head}{body}");
            let (out, got) = through(input.as_bytes()).await;
            assert_eq!(got, Some(violation), "{body:?}");
            assert!(out.ends_with(BAD_REQUEST), "{body:?}");
        }
    }

    /// A body is followed to its end: bytes inside it are never taken for
    /// the next request head, and the request after it is checked.
    #[tokio::test]
    async fn bodies_are_skipped_and_the_next_head_is_checked() {
        accepted("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18\r\n\r\nGET / HTTP/1.1\n\n\n\n")
            .await;
        let (_, violation) = through(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nokGET / HTTP/1.1\r\n\r\n",
        )
        .await;
        assert_eq!(violation, Some(Violation::MissingHost));
    }

    /// After an Upgrade request, the bytes wait for the answer: a 101 makes
    /// them tunnel data, anything else makes them the next request.
    #[tokio::test]
    async fn upgrades_wait_for_the_answer() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut strict = Strict::new(server, std::time::Duration::from_secs(30));
        client
            .write_all(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x05hello")
            .await
            .unwrap();
        let mut head = vec![0u8; 1024];
        let n = strict.read(&mut head).await.unwrap();
        assert!(head[..n].ends_with(b"\r\n\r\n"));
        strict
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
            .await
            .unwrap();
        let mut frame = [0u8; 7];
        strict.read_exact(&mut frame).await.unwrap();
        assert_eq!(&frame, b"\x81\x05hello");

        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut strict = Strict::new(server, std::time::Duration::from_secs(30));
        client
            .write_all(
                b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\nGET / HTTP/1.1\n\n",
            )
            .await
            .unwrap();
        let n = strict.read(&mut head).await.unwrap();
        assert!(head[..n].ends_with(b"\r\n\r\n"));
        strict
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        let n = strict.read(&mut head).await.unwrap();
        assert_eq!(&head[..n], BAD_REQUEST);
        assert_eq!(strict.violation(), Some(Violation::BareLineFeed));
    }
}
