//! The access log: one JSON line per request, written by a task of its own
//! to stdout or a file, reopened on SIGUSR1 so that log rotation can move
//! the file away. Lines that would block the request path are dropped
//! instead.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::observe::counted::Received;

/// Lines waiting for the writer at most.
const QUEUE: usize = 65_536;

pub struct AccessLog {
    lines: mpsc::Sender<String>,
    target: Target,
}

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

impl AccessLog {
    /// Opens the target (a file is created if need be) and starts the writer.
    pub async fn start(target: Target) -> std::io::Result<Arc<Self>> {
        let (lines, mut rx) = mpsc::channel::<String>(QUEUE);
        let mut out = open(&target).await?;
        let writer_target = target.clone();
        let mut reopen =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    line = rx.recv() => {
                        let Some(line) = line else { break };
                        let mut batch = line;
                        batch.push('\n');
                        // Take what else is queued so one write carries many lines.
                        while batch.len() < 64 * 1024 {
                            match rx.try_recv() {
                                Ok(more) => {
                                    batch.push_str(&more);
                                    batch.push('\n');
                                }
                                Err(_) => break,
                            }
                        }
                        if let Err(e) = out.write_all(batch.as_bytes()).await {
                            tracing::warn!(error = %e, "writing the access log");
                        }
                        let _ = out.flush().await;
                    }
                    _ = reopen.recv() => {
                        match open(&writer_target).await {
                            Ok(file) => {
                                out = file;
                                tracing::info!("access log reopened");
                            }
                            Err(e) => tracing::warn!(error = %e, "reopening the access log; keeping the old one"),
                        }
                    }
                }
            }
        });
        Ok(Arc::new(Self { lines, target }))
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Queues a line; when the writer is that far behind, the line is dropped.
    pub fn record(&self, line: String) {
        let _ = self.lines.try_send(line);
    }
}

async fn open(target: &Target) -> std::io::Result<Box<dyn tokio::io::AsyncWrite + Send + Unpin>> {
    Ok(match target {
        Target::Stdout => Box::new(tokio::io::stdout()),
        Target::File(path) => Box::new(
            tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await?,
        ),
    })
}

/// What each line says and of how many requests: the config's
/// `access_log.fields` and `access_log.sample`.
#[derive(Debug, Clone)]
pub struct LogFormat {
    /// The fields of a line, in order; None: every field known.
    pub fields: Option<Arc<[outpost_config::LogField]>>,
    pub sample: f64,
}

impl Default for LogFormat {
    fn default() -> Self {
        Self {
            fields: None,
            sample: 1.0,
        }
    }
}

impl LogFormat {
    pub fn new(config: &outpost_config::AccessLog) -> Self {
        Self {
            fields: config.fields.as_deref().map(Arc::from),
            sample: config.sample,
        }
    }

    /// Whether the request with this id is logged: the same ids are for
    /// the same share, spread evenly over them (a multiplicative hash).
    pub fn samples(&self, id: u64) -> bool {
        if self.sample >= 1.0 {
            return true;
        }
        let spread = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11;
        (spread as f64) / ((1u64 << 53) as f64) < self.sample
    }

    /// The line: the configured fields in their order (those known for
    /// this request), or every field known.
    fn line(&self, fields: serde_json::Map<String, serde_json::Value>) -> String {
        let Some(wanted) = &self.fields else {
            return serde_json::Value::Object(fields).to_string();
        };
        let mut line = String::from("{");
        for field in wanted.iter() {
            if let Some(value) = fields.get(field.name()) {
                if line.len() > 1 {
                    line.push(',');
                }
                line.push_str(&serde_json::Value::from(field.name()).to_string());
                line.push(':');
                line.push_str(&value.to_string());
            }
        }
        line.push('}');
        line
    }
}

/// What a request's line says before its body is out.
pub struct Pending {
    /// None when only the hooks read the line (no log, or the request is
    /// not in the sample).
    pub log: Option<(Arc<AccessLog>, LogFormat)>,
    pub hooks: Option<Arc<dyn crate::hooks::Hooks>>,
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub started: Instant,
    /// The body's length when the head declares it (0 for a body that is
    /// never sent): reached, the body is complete even when the server
    /// stops reading it at its last byte.
    pub expected: Option<u64>,
    /// The request body bytes received from the client so far.
    pub received: Received,
}

/// A response body that counts its bytes and writes the request's line
/// when it ends (or is dropped, when the client went away).
pub struct LoggedBody<B: Body<Data = Bytes> + Unpin> {
    inner: B,
    sent: u64,
    complete: bool,
    pending: Option<Pending>,
}

impl<B: Body<Data = Bytes> + Unpin> LoggedBody<B> {
    pub fn new(inner: B, pending: Pending) -> Self {
        Self {
            inner,
            sent: 0,
            complete: false,
            pending: Some(pending),
        }
    }

    fn finish(&mut self) {
        if let Some(Pending {
            log,
            hooks,
            mut fields,
            started,
            expected,
            received,
        }) = self.pending.take()
        {
            fields.insert("bytes_received".into(), received.bytes().into());
            let complete = self.complete || expected == Some(self.sent);
            fields.insert("bytes_sent".into(), self.sent.into());
            fields.insert("complete".into(), complete.into());
            fields.insert(
                "duration_ms".into(),
                (started.elapsed().as_secs_f64() * 1000.0).into(),
            );
            if let Some(hooks) = hooks {
                hooks.log(&mut fields);
            }
            if let Some((log, format)) = log {
                log.record(format.line(fields));
            }
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for LoggedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.complete = true;
                    this.finish();
                }
            }
            Some(Err(_)) => this.finish(),
            None => {
                this.complete = true;
                this.finish();
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body<Data = Bytes> + Unpin> Drop for LoggedBody<B> {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.complete = true;
        }
        self.finish();
    }
}

/// `2026-11-26T17:45:09.123Z` for a point in time.
pub fn rfc3339(time: std::time::SystemTime) -> String {
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use outpost_config::LogField;

    use super::*;

    #[test]
    fn a_sample_logs_its_share_of_requests() {
        let format = |sample| LogFormat {
            fields: None,
            sample,
        };
        let logged = |sample| {
            (0..100_000u64)
                .filter(|id| format(sample).samples(*id))
                .count()
        };
        assert_eq!(logged(1.0), 100_000);
        assert_eq!(logged(0.0), 0);
        let tenth = logged(0.1);
        assert!((9_000..11_000).contains(&tenth), "{tenth}");
    }

    #[test]
    fn the_configured_fields_come_in_their_order() {
        let format = LogFormat {
            fields: Some(Arc::from([
                LogField::Status,
                LogField::Origin,
                LogField::Time,
            ])),
            sample: 1.0,
        };
        let mut fields = serde_json::Map::new();
        for (name, value) in [("time", "t"), ("status", "200"), ("method", "GET")] {
            fields.insert(name.into(), value.into());
        }
        assert_eq!(format.line(fields), r#"{"status":"200","time":"t"}"#);
        let format = LogFormat {
            fields: Some(Arc::from([LogField::Time, LogField::Status])),
            sample: 1.0,
        };
        let mut fields = serde_json::Map::new();
        fields.insert("status".into(), 200.into());
        fields.insert("time".into(), "t\"".into());
        assert_eq!(format.line(fields), r#"{"time":"t\"","status":200}"#);
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_796_233_509_123)),
            "2026-12-02T17:45:09.123Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
