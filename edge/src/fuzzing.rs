//! The edge's parsers as the fuzz targets in `fuzz/` reach them: the strict
//! HTTP/1 framing checker that stands in front of hyper, and the `Range`
//! evaluation of a stored object. Nothing else in the workspace uses this.

use crate::front::h1_check::Checker;

pub use crate::front::h1_check::{BAD_REQUEST, MAX_FIELDS, MAX_HEAD, Violation};
pub use crate::proxy::range::{Ranges, evaluate as evaluate_range};

/// One client connection's request bytes on their way to hyper, through
/// the same checker the HTTP/1 listener uses.
#[derive(Debug, Default)]
pub struct H1Checker(Checker);

impl H1Checker {
    /// Bytes read from the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.0.feed(bytes);
    }

    /// What passed the checks and hyper would read, taken.
    pub fn take_ready(&mut self) -> Vec<u8> {
        self.0.ready.split().to_vec()
    }

    /// The start of the answer hyper writes (which decides an Upgrade);
    /// true when that released held-back bytes.
    pub fn answer_started(&mut self, data: &[u8]) -> bool {
        self.0.answer_started(data)
    }

    /// The client stopped sending.
    pub fn end(&mut self) {
        self.0.end();
    }

    /// Why a request was refused, if one was.
    pub fn violation(&self) -> Option<Violation> {
        self.0.violation()
    }

    /// A request was refused: nothing more is read.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// The connection was upgraded: bytes pass unchecked.
    pub fn is_tunnel(&self) -> bool {
        self.0.is_tunnel()
    }

    /// Bytes are held back that have not passed yet.
    pub fn holds_bytes(&self) -> bool {
        self.0.holds_bytes()
    }

    /// A request head is awaited or arriving.
    pub fn awaits_head(&self) -> bool {
        self.0.awaits_head()
    }
}
