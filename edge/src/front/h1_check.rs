//! The HTTP/1 request framing checker behind [`crate::front::strict`].
//!
//! hyper accepts some request framings that RFC 9112 lets a server reject
//! and that proxies have been smuggled through: Content-Length together
//! with Transfer-Encoding (it drops the Content-Length), codings other than
//! a lone `chunked`, bare LF line ends, chunk extensions of any syntax, and
//! a missing Host. The [`Checker`] follows a connection's messages byte by
//! byte: each request head is held back until it is complete and checked,
//! each body is followed through its framing (and passed on as it comes),
//! and the first chunk-size line of a chunked body, when it arrived with
//! the head, is checked before the head is released.
//!
//! A request that fails is never seen by the service: in its place comes
//! a request line hyper rejects itself (400, or 431 for a head over the
//! limit), and nothing more. After a request with `Upgrade`, the checker
//! waits to be told the answer: a `101` turns the connection into an
//! opaque tunnel, anything else resumes checking.

use bytes::{Buf, BytesMut};

/// Longest request head accepted (request line and fields); hyper's own
/// buffer limit is set to the same.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in a head; hyper's `max_headers` is the same.
pub const MAX_FIELDS: usize = 100;
/// Longest chunk-size line (with extensions), and all trailers together.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;
/// What hyper gets instead of a bad request: a method that is not a
/// token, which it answers with 400 and a close.
pub const BAD_REQUEST: &[u8] = b"\x01 / HTTP/1.1\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
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
    /// A fragment or a backslash in the request target (RFC 9112 §3.2).
    BadTarget,
    BadChunkLine,
    BadChunkEnd,
    BadTrailers,
}

/// Follows one connection's request bytes: what comes in is `feed`, what
/// passed the checks is `ready` for hyper.
#[derive(Debug)]
pub(crate) struct Checker {
    state: State,
    /// Read but not yet checked.
    pending: BytesMut,
    /// Checked, waiting for hyper to read.
    pub(crate) ready: BytesMut,
    violation: Option<Violation>,
}

impl Default for Checker {
    fn default() -> Self {
        Self {
            state: State::Head,
            pending: BytesMut::new(),
            ready: BytesMut::new(),
            violation: None,
        }
    }
}

impl Checker {
    /// Takes bytes read from the client and checks what can be checked.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        self.advance();
    }

    /// Why the connection's last request was refused, if it was.
    pub(crate) fn violation(&self) -> Option<Violation> {
        self.violation
    }

    /// Nothing more will be read: a bad request was replaced, or the
    /// connection is given up.
    pub(crate) fn is_closed(&self) -> bool {
        self.state == State::Rejected
    }

    /// The connection was upgraded: bytes pass unchecked.
    pub(crate) fn is_tunnel(&self) -> bool {
        self.state == State::Tunnel
    }

    /// Whether bytes are held back that have not passed yet.
    pub(crate) fn holds_bytes(&self) -> bool {
        !self.pending.is_empty()
    }

    /// A request head is awaited or arriving (the time a head may take
    /// runs); false once one is through, while its body passes.
    pub(crate) fn awaits_head(&self) -> bool {
        self.state == State::Head
    }

    /// The client stopped sending: what was held back never completed a
    /// checked unit, so hyper sees the end where the last one did.
    pub(crate) fn end(&mut self) {
        self.pending.clear();
    }

    /// A head took too long: nothing more is read.
    pub(crate) fn give_up(&mut self) {
        self.pending.clear();
        self.state = State::Rejected;
    }

    /// hyper writes `data`; while an Upgrade request waits, the start of
    /// its answer says what the connection becomes: 101 opens a tunnel,
    /// anything else means the held-back bytes are the next request.
    /// True when that released bytes for hyper to read.
    pub(crate) fn answer_started(&mut self, data: &[u8]) -> bool {
        if self.state != State::AwaitUpgrade || data.len() < 12 || !data.starts_with(b"HTTP/1.1 ") {
            return false;
        }
        self.state = if &data[9..12] == b"101" {
            State::Tunnel
        } else {
            State::Head
        };
        self.advance();
        !self.ready.is_empty()
    }

    /// Moves what can be checked from `pending` to `ready`.
    fn advance(&mut self) {
        loop {
            let progressed = match self.state {
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
        if self.ready.is_empty() && n == self.pending.len() {
            // All that came is checked (one request, as a rule): the two
            // buffers change places instead of the bytes being copied.
            std::mem::swap(&mut self.ready, &mut self.pending);
            return;
        }
        // A copy and a move of the start, not `split_to`, which would turn
        // the buffer into a shared one (an allocation) on every request.
        self.ready.extend_from_slice(&self.pending[..n]);
        self.pending.advance(n);
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

    fn head(&mut self) -> bool {
        // RFC 9112 §2.2: empty lines before the request line are ignored.
        while self.pending.starts_with(b"\r\n") {
            self.pending.advance(2);
        }
        let Some(end) = find_head_end(&self.pending) else {
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
            Err(violation) => return self.reject(violation),
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
    // Room for the fields, not filled in first (3 KiB written per head).
    let mut fields =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut request = httparse::Request::new(&mut []);
    match request.parse_with_uninit_headers(head, &mut fields) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Violation::BadHead),
        Err(httparse::Error::TooManyHeaders) => return Err(Violation::TooManyFields),
        Err(_) => return Err(Violation::BadHead),
    }
    // RFC 9112 §3.2: a request target has no fragment, and RFC 3986 has no
    // backslash; origins and caches that read either differently (a
    // fragment cut or kept, `\` as `/`) disagree on what was asked for.
    if request
        .path
        .is_some_and(|target| target.contains(['#', '\\']))
    {
        return Err(Violation::BadTarget);
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
fn parse_chunk_line(line: &[u8]) -> Result<u64, Violation> {
    let line = line.strip_suffix(b"\r\n").ok_or(Violation::BadChunkLine)?;
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(Violation::BadChunkLine);
    }
    let size = u64::from_str_radix(
        std::str::from_utf8(&line[..digits]).map_err(|_| Violation::BadChunkLine)?,
        16,
    )
    .map_err(|_| Violation::BadChunkLine)?;
    let mut rest = &line[digits..];
    loop {
        if rest.is_empty() {
            return Ok(size);
        }
        rest = skip_bws(rest)
            .strip_prefix(b";")
            .ok_or(Violation::BadChunkLine)?;
        rest = skip_bws(rest);
        let name = token_len(rest);
        if name == 0 {
            return Err(Violation::BadChunkLine);
        }
        rest = skip_bws(&rest[name..]);
        if let Some(value) = rest.strip_prefix(b"=") {
            let value = skip_bws(value);
            rest = if value.first() == Some(&b'"') {
                &value[quoted_len(value).ok_or(Violation::BadChunkLine)?..]
            } else {
                let n = token_len(value);
                if n == 0 {
                    return Err(Violation::BadChunkLine);
                }
                &value[n..]
            };
        }
        // What follows must be BWS, another extension or the end.
        if !rest.is_empty() && !matches!(rest[0], b' ' | b'\t' | b';') {
            return Err(Violation::BadChunkLine);
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

/// Where the first empty line (the end of a head) begins.
fn find_head_end(haystack: &[u8]) -> Option<usize> {
    static END: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));
    END.find(haystack)
}

fn has_bare_lf(bytes: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', bytes).any(|i| i == 0 || bytes[i - 1] != b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What hyper would read after the client sent `input` and closed.
    fn through(input: &[u8]) -> (Vec<u8>, Option<Violation>) {
        let mut checker = Checker::default();
        checker.feed(input);
        checker.end();
        (checker.ready.to_vec(), checker.violation())
    }

    fn refused(input: &str) -> Violation {
        let (out, violation) = through(input.as_bytes());
        assert!(
            out.ends_with(BAD_REQUEST) || out.len() > MAX_HEAD,
            "{input:?} went through as {:?}",
            String::from_utf8_lossy(&out)
        );
        violation.expect("a violation")
    }

    fn accepted(input: &str) {
        let (out, violation) = through(input.as_bytes());
        assert_eq!(violation, None, "{input:?}");
        assert_eq!(String::from_utf8_lossy(&out), input);
    }

    #[test]
    fn well_formed_requests_pass_unchanged() {
        accepted("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        accepted("GET /x HTTP/1.1\r\nHost: a\r\n\r\nGET /y HTTP/1.1\r\nHost: a\r\n\r\n");
        // RFC 9112 §2.2: an empty line before a request line is dropped.
        let (out, _) = through(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(out, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        accepted(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        );
        accepted(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b;c=\"d;\\\"e\"\r\nhello\r\n0\r\nx-sum: 1\r\n\r\n",
        );
        accepted("GET / HTTP/1.0\r\n\r\n");
    }

    #[test]
    fn ambiguous_framing_is_refused() {
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
            assert_eq!(refused(input), expected, "{input:?}");
        }
    }

    /// RFC 9112 §2.2, §5.2, §3.2; RFC 9110 §5.5.
    #[test]
    fn malformed_heads_are_refused() {
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
            ("GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", BadTarget),
            ("GET /a\\..\\b HTTP/1.1\r\nHost: a\r\n\r\n", BadTarget),
            ("GET /?q=#x HTTP/1.1\r\nHost: a\r\n\r\n", BadTarget),
        ];
        for (input, expected) in cases {
            assert_eq!(refused(input), expected, "{input:?}");
        }
        let many: String = (0..=MAX_FIELDS).map(|i| format!("x{i}: y\r\n")).collect();
        assert_eq!(
            refused(&format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n")),
            TooManyFields
        );
        let huge = "a".repeat(MAX_HEAD);
        let (out, violation) = through(format!("GET / HTTP/1.1\r\nX: {huge}").as_bytes());
        assert_eq!(violation, Some(HeadTooLarge));
        assert!(out.len() > MAX_HEAD && out.starts_with(b"GET / HTTP/1.1\r\nx: a"));
    }

    /// RFC 9112 §7.1: chunk sizes and extensions.
    #[test]
    fn malformed_chunks_are_refused() {
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
            let (out, violation) = through(input.as_bytes());
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
            let (out, got) = through(input.as_bytes());
            assert_eq!(got, Some(violation), "{body:?}");
            assert!(out.ends_with(BAD_REQUEST), "{body:?}");
        }
    }

    /// A body is followed to its end: bytes inside it are never taken for
    /// the next request head, and the request after it is checked.
    #[test]
    fn bodies_are_skipped_and_the_next_head_is_checked() {
        accepted("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18\r\n\r\nGET / HTTP/1.1\n\n\n\n");
        let (_, violation) = through(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nokGET / HTTP/1.1\r\n\r\n",
        );
        assert_eq!(violation, Some(Violation::MissingHost));
    }

    /// Property tests: connections made of request pieces, well-formed and
    /// not, cut into reads anywhere (`fuzz/` checks the same from bytes).
    mod properties {
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;

        fn piece() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                Just(b"GET / HTTP/1.1\r\n".to_vec()),
                Just(b"POST /p HTTP/1.1\r\n".to_vec()),
                Just(b"GET / HTTP/1.0\r\n".to_vec()),
                Just(b"Host: a\r\n".to_vec()),
                Just(b"Content-Length: 3\r\n".to_vec()),
                Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
                Just(b"Upgrade: websocket\r\n".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b"\n".to_vec()),
                Just(b"3;a=\"b\"\r\nabc\r\n".to_vec()),
                Just(b"0\r\n\r\n".to_vec()),
                Just(b" folded\r\n".to_vec()),
                "[ -~]{0,12}".prop_map(String::into_bytes),
                vec(any::<u8>(), 0..4),
            ]
        }

        fn run(input: &[u8], cuts: &[usize]) -> (Vec<u8>, bool) {
            let mut checker = Checker::default();
            let mut start = 0;
            for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
                let cut = cut.clamp(start, input.len());
                checker.feed(&input[start..cut]);
                start = cut;
            }
            checker.end();
            assert_eq!(checker.is_closed(), checker.violation().is_some());
            (checker.ready.to_vec(), checker.is_closed())
        }

        /// `passed` is `input` with only empty lines (CRLF) left out.
        fn only_empty_lines_dropped(input: &[u8], passed: &[u8]) -> bool {
            let (mut i, mut j) = (0, 0);
            while j < passed.len() {
                if i < input.len() && input[i] == passed[j] {
                    i += 1;
                    j += 1;
                } else if input[i.min(input.len())..].starts_with(b"\r\n") {
                    i += 2;
                } else {
                    return false;
                }
            }
            true
        }

        proptest! {
            /// RFC 9112: however a connection's bytes are cut into reads,
            /// the same requests reach hyper, unchanged (only empty lines
            /// before a request line dropped), or the same refusal does.
            #[test]
            fn reads_cut_anywhere_pass_the_same(
                pieces in vec(piece(), 1..12),
                mut cuts in vec(0usize..200, 0..6),
            ) {
                let input = pieces.concat();
                cuts.sort_unstable();
                let (whole, whole_closed) = run(&input, &[]);
                let (cut, cut_closed) = run(&input, &cuts);
                prop_assert_eq!(whole_closed, cut_closed);
                if !whole_closed {
                    prop_assert_eq!(&whole, &cut);
                }
                for (passed, closed) in [(whole, whole_closed), (cut, cut_closed)] {
                    let passed = if closed {
                        let mut too_large = b"GET / HTTP/1.1\r\nx: ".to_vec();
                        too_large.resize(too_large.len() + MAX_HEAD + 1, b'a');
                        passed
                            .strip_suffix(BAD_REQUEST)
                            .or_else(|| passed.strip_suffix(too_large.as_slice()))
                            .map(<[u8]>::to_vec)
                    } else {
                        Some(passed)
                    };
                    let passed = passed.expect("a refusal ends with its stand-in request");
                    prop_assert!(only_empty_lines_dropped(&input, &passed));
                }
            }
        }
    }
}
