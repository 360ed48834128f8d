//! Interim (1xx) responses from the origin on their way to the client
//! (RFC 9110 §15.2: a proxy forwards the 1xx responses it did not ask for).
//!
//! hyper's server can send none, on either protocol, so they are written
//! by the strict connection wrapper ([`crate::front::strict::Strict`]) into the
//! connection's output, between what hyper writes:
//! - HTTP/1.1: as a head of their own, where hyper's output is at a
//!   message's end (everything it wrote has been flushed).
//! - HTTP/2: as a HEADERS frame on the request's stream (RFC 9113 §8.1),
//!   at a frame boundary outside any header block, and before the stream's
//!   own HEADERS. Its header block uses literals only, never the dynamic
//!   table, so the HPACK state h2 shares with the client is untouched. To
//!   know each request's stream (hyper does not say), the wrapper appends
//!   a field naming it, with a secret of the connection's, to the header
//!   block of every request that opens a stream; the handler takes it off
//!   before anything else sees the request, and believes it only with the
//!   secret (a client could otherwise make its own field the one that
//!   counts).
//!
//! Each request's handler opens its place in the queue when it starts; the
//! origin's interim heads are queued there, and the place is closed
//! (dropping whatever was not sent) before its final answer goes to hyper.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

/// The field appended to each HTTP/2 request's header block, naming its
/// stream: the connection's secret in hex, then the stream. A client's own
/// fields of this name are dropped with it.
pub const STREAM_FIELD: &str = "x-outpost-h2-stream";

/// Interim heads queued for one request at most, and their bytes: an
/// origin cannot grow a slow client's queue without end.
const MAX_HEADS: usize = 16;
const MAX_BYTES: usize = 64 << 10;
/// All the interim bytes queued on one connection (HTTP/2 multiplexes).
const MAX_CONNECTION_BYTES: usize = 256 << 10;
/// The largest header block an HTTP/2 interim response may have: one frame
/// of the smallest size a client may allow (RFC 9113 §4.2).
const MAX_H2_BLOCK: usize = 16 << 10;

/// One connection's queue of interim responses, or a request's handle on it.
#[derive(Clone, Default)]
pub struct Interim {
    queue: Arc<Queue>,
    /// The request this handle was opened for: a count on HTTP/1, the
    /// stream on HTTP/2; 0 for the connection's own handle.
    request: u64,
}

struct Queue {
    /// Unguessable by the client: the stream-naming field carries it, in
    /// hex (made when first needed: HTTP/1 connections never do).
    secret: std::sync::OnceLock<String>,
    state: std::sync::Mutex<State>,
    /// Set while heads are queued: the connection's reads and writes look
    /// at this alone otherwise.
    queued: AtomicBool,
    /// The connection's task, woken to write them.
    waker: futures_util::task::AtomicWaker,
}

impl Default for Queue {
    fn default() -> Self {
        Self {
            secret: std::sync::OnceLock::new(),
            state: Default::default(),
            queued: AtomicBool::new(false),
            waker: Default::default(),
        }
    }
}

/// A secret for one connection: a keyed hash of a count, under a key drawn
/// once per process from the kernel.
fn connection_secret() -> u64 {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let key = KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        if rustix::rand::getrandom(&mut key, rustix::rand::GetRandomFlags::empty()).ok() != Some(32)
        {
            // Not expected on Linux; the clock is the fallback.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            key = *blake3::hash(&now.as_nanos().to_le_bytes()).as_bytes();
        }
        key
    });
    let count = COUNT.fetch_add(1, Ordering::Relaxed);
    let hash = blake3::keyed_hash(key, &count.to_le_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

#[derive(Default)]
struct State {
    /// The connection speaks HTTP/2: heads are HEADERS frames.
    h2: bool,
    /// No interim responses on this connection any more.
    off: bool,
    /// Encoded heads and the request each is for, in order.
    queued: VecDeque<(u64, Bytes)>,
    bytes: usize,
    /// The requests being answered (one at a time on HTTP/1).
    open: Vec<Open>,
    /// The last HTTP/1 request count given.
    last: u64,
}

struct Open {
    request: u64,
    heads: usize,
    bytes: usize,
}

impl State {
    /// Closes `request`'s place: nothing more is queued for it and what
    /// was queued is dropped.
    fn close(&mut self, request: u64) {
        self.open.retain(|o| o.request != request);
        let mut dropped = 0;
        self.queued.retain(|(r, head)| {
            let keep = *r != request;
            if !keep {
                dropped += head.len();
            }
            keep
        });
        self.bytes -= dropped;
    }
}

/// A request's place in its connection's queue, closed when dropped: when
/// the final answer is ready, or when the request is given up.
pub struct Opened(Interim);

impl Opened {
    /// The handle the origin's interim responses are sent through.
    pub fn handle(&self) -> Interim {
        self.0.clone()
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.close(self.0.request);
        if state.queued.is_empty() {
            self.0.queue.queued.store(false, Ordering::Release);
        }
    }
}

impl Interim {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.queue.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An HTTP/1.1 request is being answered (the only one: the last one's
    /// place is closed).
    pub fn open(&self) -> Opened {
        let mut state = self.lock();
        state.last += 1;
        let request = state.last;
        state.open.clear();
        state.queued.clear();
        state.bytes = 0;
        state.open.push(Open {
            request,
            heads: 0,
            bytes: 0,
        });
        self.queue.queued.store(false, Ordering::Release);
        Opened(Interim {
            queue: self.queue.clone(),
            request,
        })
    }

    /// An HTTP/2 request is being answered on `stream`.
    pub fn open_stream(&self, stream: u32) -> Opened {
        let request = u64::from(stream);
        let mut state = self.lock();
        state.close(request);
        state.open.push(Open {
            request,
            heads: 0,
            bytes: 0,
        });
        Opened(Interim {
            queue: self.queue.clone(),
            request,
        })
    }

    /// Queues an origin's interim response for this handle's request, if it
    /// is still being answered and the response is one to forward: not 100
    /// (an answer to an expectation of ours, not the client's) nor 101 (a
    /// final answer for a tunnel). Hop-by-hop fields stay behind.
    pub fn send(&self, status: StatusCode, headers: &HeaderMap) {
        if self.request == 0 || !status.is_informational() || matches!(status.as_u16(), 100 | 101) {
            return;
        }
        let h2 = {
            let state = self.lock();
            if state.off || !state.open.iter().any(|o| o.request == self.request) {
                return;
            }
            state.h2
        };
        let mut headers = headers.clone();
        crate::proxy::headers::strip_hop_by_hop(&mut headers);
        let head = if h2 {
            let Ok(stream) = u32::try_from(self.request) else {
                return;
            };
            match h2_frame(stream, status, &headers) {
                Some(frame) => frame,
                None => return,
            }
        } else {
            h1_head(status, &headers)
        };
        let mut state = self.lock();
        let connection_bytes = state.bytes;
        let Some(open) = state.open.iter_mut().find(|o| o.request == self.request) else {
            return;
        };
        if open.heads >= MAX_HEADS
            || open.bytes + head.len() > MAX_BYTES
            || connection_bytes + head.len() > MAX_CONNECTION_BYTES
        {
            return;
        }
        open.heads += 1;
        open.bytes += head.len();
        state.bytes += head.len();
        state.queued.push_back((self.request, head));
        self.queue.queued.store(true, Ordering::Release);
        drop(state);
        self.queue.waker.wake();
    }

    /// The connection's secret, in hex.
    fn secret(&self) -> &str {
        self.queue
            .secret
            .get_or_init(|| format!("{:016x}", connection_secret()))
    }

    /// The connection turned out to speak HTTP/2.
    pub(crate) fn set_h2(&self) {
        self.lock().h2 = true;
    }

    /// The field naming `stream`, as an HPACK literal that is not indexed
    /// (RFC 7541 §6.2.2), to end its request's header block; None once
    /// interim responses are off.
    pub(crate) fn stream_field(&self, stream: u32) -> Option<Vec<u8>> {
        if self.lock().off {
            return None;
        }
        let mut field = Vec::with_capacity(48);
        field.push(0x00);
        hpack_string(&mut field, STREAM_FIELD.as_bytes());
        hpack_string(&mut field, format!("{}{stream}", self.secret()).as_bytes());
        Some(field)
    }

    /// Takes the stream-naming fields off a request: the stream the last
    /// one names, if it carries this connection's secret and names a
    /// stream a client may open (odd, RFC 9113 §5.1.1).
    pub fn take_stream(&self, headers: &mut HeaderMap) -> Option<u32> {
        if !headers.contains_key(STREAM_FIELD) {
            return None;
        }
        let stream = headers
            .get_all(STREAM_FIELD)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix(self.secret()))
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|s| s % 2 == 1 && *s < 1 << 31);
        headers.remove(STREAM_FIELD);
        stream
    }

    /// No more interim responses on this connection: the client asked for
    /// an HPACK table smaller than the default, and the first header block
    /// after that must be h2's own (RFC 7541 §4.2).
    pub(crate) fn turn_off(&self) {
        let mut state = self.lock();
        state.off = true;
        state.queued.clear();
        state.bytes = 0;
        self.queue.queued.store(false, Ordering::Release);
    }

    /// HTTP/2: `stream` got its final HEADERS, or was reset; nothing more
    /// may be sent on it.
    pub(crate) fn finished(&self, stream: u32) {
        let mut state = self.lock();
        if !state.open.is_empty() || !state.queued.is_empty() {
            state.close(u64::from(stream));
            if state.queued.is_empty() {
                self.queue.queued.store(false, Ordering::Release);
            }
        }
    }

    /// Whether anything waits to be written.
    pub(crate) fn pending(&self) -> bool {
        self.queue.queued.load(Ordering::Acquire)
    }

    /// The connection's task, to be woken when something is queued.
    pub(crate) fn register(&self, waker: &std::task::Waker) {
        self.queue.waker.register(waker);
    }

    /// The next head or frame to write, if any.
    pub(crate) fn next(&self) -> Option<Bytes> {
        if !self.pending() {
            return None;
        }
        let mut state = self.lock();
        let head = state.queued.pop_front().map(|(_, head)| head);
        if let Some(head) = &head {
            state.bytes -= head.len();
        }
        if state.queued.is_empty() {
            self.queue.queued.store(false, Ordering::Release);
        }
        head
    }
}

/// An interim response as an HTTP/1.1 client is sent it.
fn h1_head(status: StatusCode, headers: &HeaderMap) -> Bytes {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("Interim")
    )
    .into_bytes();
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    Bytes::from(head)
}

/// An interim response as one HTTP/2 HEADERS frame on `stream` (END_HEADERS,
/// not END_STREAM), its fields as literals that are not indexed (RFC 7541
/// §6.2.2), so the dynamic table is neither used nor changed. None when
/// the block would not fit one frame of the smallest size allowed.
fn h2_frame(stream: u32, status: StatusCode, headers: &HeaderMap) -> Option<Bytes> {
    let mut block = Vec::with_capacity(64);
    // `:status` by its static table index (8), the value as a literal.
    block.push(0x08);
    hpack_string(&mut block, status.as_str().as_bytes());
    for (name, value) in headers {
        block.push(0x00);
        hpack_string(&mut block, name.as_str().as_bytes());
        hpack_string(&mut block, value.as_bytes());
    }
    if block.len() > MAX_H2_BLOCK {
        return None;
    }
    Some(Bytes::from(h2_frame_bytes(0x1, 0x4, stream, &block)))
}

/// One HTTP/2 frame: its 9-byte header, then `payload` (at most 16 MiB).
pub(crate) fn h2_frame_bytes(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_be_bytes();
    let mut frame = Vec::with_capacity(9 + payload.len());
    frame.extend_from_slice(&length[1..]);
    frame.push(kind);
    frame.push(flags);
    frame.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An HPACK string literal, not Huffman-coded (RFC 7541 §5.2), its length
/// an integer with a 7-bit prefix (§5.1).
fn hpack_string(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut len = bytes.len();
    if len < 127 {
        out.push(len as u8);
    } else {
        out.push(127);
        len -= 127;
        while len >= 128 {
            out.push((len % 128) as u8 | 0x80);
            len /= 128;
        }
        out.push(len as u8);
    }
    out.extend_from_slice(bytes);
}

/// The header block of a 103 with `link: </a.css>; rel=preload`, as
/// [`Interim::send`] encodes it (for tests).
#[cfg(test)]
pub(crate) fn early_hints_block() -> Vec<u8> {
    let mut block = vec![0x08, 3];
    block.extend_from_slice(b"103");
    block.extend_from_slice(&[0x00, 4]);
    block.extend_from_slice(b"link");
    block.push(21);
    block.extend_from_slice(b"</a.css>; rel=preload");
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("link", "</a.css>; rel=preload".parse().unwrap());
        headers.insert("connection", "x-hop".parse().unwrap());
        headers.insert("x-hop", "1".parse().unwrap());
        headers
    }

    #[test]
    fn http1_heads_are_queued_for_the_open_request_only() {
        let conn = Interim::default();
        let first = conn.open();
        first.handle().send(StatusCode::EARLY_HINTS, &hints());
        // 100 and 101 are the proxy's own business.
        first.handle().send(StatusCode::CONTINUE, &hints());
        first
            .handle()
            .send(StatusCode::SWITCHING_PROTOCOLS, &hints());
        let late = first.handle();
        let head = conn.next().expect("one head");
        assert_eq!(
            &head[..],
            b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n"
        );
        assert!(conn.next().is_none());
        drop(first);
        // A head from an exchange already answered is dropped.
        late.send(StatusCode::EARLY_HINTS, &hints());
        assert!(conn.next().is_none());
        let second = conn.open();
        for _ in 0..MAX_HEADS + 5 {
            second.handle().send(StatusCode::EARLY_HINTS, &hints());
        }
        let mut count = 0;
        while conn.next().is_some() {
            count += 1;
        }
        assert_eq!(count, MAX_HEADS, "at most {MAX_HEADS} heads per request");
    }

    /// RFC 9113 §8.1: a HEADERS frame on the request's stream, without
    /// END_STREAM; RFC 7541 §6.2.2 literals only.
    #[test]
    fn http2_frames_name_their_stream_and_use_literals_only() {
        let conn = Interim::default();
        conn.set_h2();
        let one = conn.open_stream(1);
        let three = conn.open_stream(3);
        three.handle().send(StatusCode::EARLY_HINTS, &hints());
        one.handle().send(StatusCode::EARLY_HINTS, &hints());
        let frame = conn.next().expect("a frame");
        assert_eq!(
            &frame[..],
            &h2_frame_bytes(0x1, 0x4, 3, &early_hints_block())[..]
        );
        assert_eq!(&frame[..9], &[0, 0, 33, 0x1, 0x4, 0, 0, 0, 3]);
        // Stream 1's final HEADERS went out: its queued frame goes too.
        conn.finished(1);
        assert!(conn.next().is_none());
        drop(three);
        drop(one);

        // A block too big for the smallest frame is not sent.
        let four = conn.open_stream(5);
        let mut big = HeaderMap::new();
        big.insert("link", "x".repeat(MAX_H2_BLOCK).parse().unwrap());
        four.handle().send(StatusCode::EARLY_HINTS, &big);
        assert!(conn.next().is_none());
        drop(four);

        // Turned off: nothing more.
        let five = conn.open_stream(7);
        conn.turn_off();
        five.handle().send(StatusCode::EARLY_HINTS, &hints());
        assert!(conn.next().is_none());
    }

    #[test]
    fn the_connection_queue_is_bounded() {
        let conn = Interim::default();
        conn.set_h2();
        let mut value = "y".repeat(15_000);
        value.insert(0, '<');
        let mut headers = HeaderMap::new();
        headers.insert("link", value.parse().unwrap());
        let opened: Vec<Opened> = (0..40).map(|i| conn.open_stream(2 * i + 1)).collect();
        for o in &opened {
            o.handle().send(StatusCode::EARLY_HINTS, &headers);
        }
        let mut bytes = 0;
        while let Some(frame) = conn.next() {
            bytes += frame.len();
        }
        assert!(bytes <= MAX_CONNECTION_BYTES, "{bytes}");
        assert!(bytes > MAX_CONNECTION_BYTES - 16_000, "{bytes}");
    }

    #[test]
    fn the_stream_field_counts_only_with_the_connection_secret() {
        let conn = Interim::default();
        let field = conn.stream_field(7).expect("a field");
        // A literal that is not indexed, with a new name.
        assert_eq!(field[0], 0x00);
        assert_eq!(usize::from(field[1]), STREAM_FIELD.len());
        let value = String::from_utf8(field[2 + STREAM_FIELD.len() + 1..].to_vec()).unwrap();
        assert_eq!(value.len(), 17);
        assert!(value.ends_with('7'));

        let mut headers = HeaderMap::new();
        headers.append(STREAM_FIELD, "1".parse().unwrap());
        headers.append(STREAM_FIELD, value.parse().unwrap());
        headers.insert("accept", "*/*".parse().unwrap());
        assert_eq!(conn.take_stream(&mut headers), Some(7));
        assert!(headers.get(STREAM_FIELD).is_none());
        assert_eq!(headers.len(), 1);
        assert_eq!(conn.take_stream(&mut headers), None);

        // Without the secret, or with another connection's, or naming a
        // stream no client may open: nothing, and the fields are gone.
        let other = Interim::default();
        for forged in [
            "7".to_owned(),
            other
                .stream_field(7)
                .map(|f| String::from_utf8_lossy(&f[2 + STREAM_FIELD.len() + 1..]).into_owned())
                .unwrap(),
            format!("{}8", &value[..16]),
            format!("{}2147483649", &value[..16]),
            format!("{}0", &value[..16]),
        ] {
            let mut headers = HeaderMap::new();
            headers.append(STREAM_FIELD, forged.parse().unwrap());
            assert_eq!(conn.take_stream(&mut headers), None, "{forged}");
            assert!(headers.is_empty());
        }
        conn.turn_off();
        assert!(conn.stream_field(9).is_none());
    }

    #[test]
    fn long_hpack_lengths_use_continuation_bytes() {
        let mut out = Vec::new();
        hpack_string(&mut out, &[b'a'; 1337]);
        // RFC 7541 §C.1.2's worked example, with a 7-bit prefix: 127, then
        // 1210 = 0x4ba → 0xba, 0x09.
        assert_eq!(&out[..3], &[127, 0xba, 0x09]);
        assert_eq!(out.len(), 3 + 1337);
    }
}
