//! Why a request to an origin failed: for the client (`UpstreamError`)
//! and, per attempt, for the retry decision (`Failure`).

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no origin server could be reached: {0}")]
    Connect(String),
    #[error("the origin did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the origin failed before answering: {0}")]
    Failed(String),
}

/// Why one attempt at one server failed, as far as a retry cares.
#[derive(Debug)]
pub enum Failure {
    /// No connection: nothing reached the server.
    Connect(String),
    /// The server refused the stream unprocessed (RFC 9113 §8.7).
    Refused(String),
    /// The request may have reached the server.
    Failed(String),
}

/// An error and its causes on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
