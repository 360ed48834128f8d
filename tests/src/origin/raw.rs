//! [`RawOrigin`]: HTTP/1.1 written by hand on TCP, for the failures hyper
//! would not produce on purpose: answers cut short, connections closed
//! silently or unanswered, bytes sent exactly as given.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::scripted::{Recorder, Scripted};

/// Serving raw bytes: see [`RawOrigin`].
#[derive(Debug)]
pub enum Raw {}

/// An HTTP/1.1 origin written on raw TCP that misbehaves as told. It
/// counts requests (by their head) and connections; it records no
/// [`Seen`](super::Seen).
pub type RawOrigin = Scripted<Raw>;

/// How a [`RawOrigin`] misbehaves.
#[derive(Debug, Clone)]
pub enum Misbehaviour {
    /// Answers each request with a small 200 and closes the connection
    /// without saying so: the client believes it may reuse it.
    AnswerThenCloseSilently,
    /// Reads the request and closes the connection without an answer.
    CloseWithoutAnswer,
    /// Answers every request on a connection with these bytes, as they are.
    Respond(&'static str),
    /// Answers with the first bytes, then, once the semaphore gives a
    /// permit, the second (an interim response, then the final one).
    RespondInTwo(&'static str, &'static str, Arc<tokio::sync::Semaphore>),
}

impl Scripted<Raw> {
    pub async fn start(behaviour: Misbehaviour) -> RawOrigin {
        Scripted::listen(move |stream, recorder| misbehave(stream, recorder, behaviour.clone()))
            .await
    }
}

/// Reads each request's head on `stream` and answers it as `behaviour` says.
async fn misbehave(mut stream: TcpStream, recorder: Arc<Recorder>, behaviour: Misbehaviour) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        head.clear();
        recorder.count();
        match &behaviour {
            Misbehaviour::AnswerThenCloseSilently => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncache-control: no-store\r\n\r\nok")
                    .await;
                return;
            }
            Misbehaviour::CloseWithoutAnswer => return,
            Misbehaviour::Respond(raw) => {
                if stream.write_all(raw.as_bytes()).await.is_err() {
                    return;
                }
            }
            Misbehaviour::RespondInTwo(first, then, release) => {
                if stream.write_all(first.as_bytes()).await.is_err() {
                    return;
                }
                let Ok(permit) = release.acquire().await else {
                    return;
                };
                permit.forget();
                if stream.write_all(then.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }
}
