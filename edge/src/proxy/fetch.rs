//! Misses: fetched from the origin, collapsed onto one fetch per key when
//! they may share it, and stored as they stream to the client.

use std::time::{Instant, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{IF_RANGE, RANGE};
use http::{Method, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use outpost_cache::{Fetched, FillWriter, Leader, Lookup, Role, SharedBody, Sharing};

use super::headers;
use super::range::{self, Ranges};
use super::storing::StoringBody;
use crate::fleet::gate::Access;
use crate::origin::pool::Answer;
use crate::origin::response::OriginBody;

use super::exchange::Exchange;
use super::hit::{from_cache, unsatisfiable, unvalidated};
use super::partial;
use super::respond::{relay, to_client, to_client_empty, upstream_error};
use super::status::{CacheStatus, Detail};
use super::{BoxError, Proxy, ProxyBody, Reply};

impl Proxy {
    /// Fetches a miss from the origin, storing the answer if it may be stored.
    ///
    /// A request for one range is answered from the URL's stored piece
    /// when that holds the range, and is otherwise asked of the origin as
    /// it is; a 206 is then kept as the piece (`partial.rs`). A request for
    /// several ranges fetches the whole object, so that later ranges are
    /// hits, and takes its ranges from the stream; when the object turns
    /// out larger than the cache keeps, the ranges are asked of the origin
    /// instead.
    pub(super) async fn fetch(&self, request: Exchange, status: CacheStatus) -> Reply {
        if request.parts.method == Method::GET
            && !request.key.is_part()
            && partial::single_range(&request.parts.headers)
            && let Some(reply) = self.answer_from_piece(&request).await
        {
            return reply;
        }
        // Plain GETs collapse onto one fetch, and so do the fetches of one
        // slice; a range or an authenticated request fetches on its own.
        let collapsible = request.parts.method == Method::GET
            && (!request.parts.headers.contains_key(RANGE) || request.key.is_part())
            && !request
                .parts
                .headers
                .contains_key(http::header::AUTHORIZATION);
        if !collapsible {
            return self.fetch_alone(request, status, None).await;
        }
        match self.coalescer.join(*request.key.hash()) {
            Role::Leader(leader) => {
                // A fill that ended between this request's lookup and its
                // join has stored what it came for.
                if let Some(reply) = self.stored_meanwhile(&request, status).await {
                    drop(leader);
                    return reply;
                }
                self.fetch_alone(request, status, Some(leader)).await
            }
            Role::Pass => self.fetch_alone(request, status, None).await,
            Role::Follower(fill) => {
                let waited = Instant::now();
                // Only a head whose variant this request selects.
                let head = fill
                    .head_for(&request.parts.headers, self.coalesce_timeout)
                    .await;
                self.metrics
                    .coalesce_wait
                    .observe(waited.elapsed().as_secs_f64());
                if let Some(head) = head {
                    // From the fill while it streams in, from its first
                    // byte; or from the cache once stored: a large body,
                    // or one whose first bytes the fill has let go.
                    let streamed = match head.body {
                        SharedBody::Streamed => fill.reader(),
                        SharedBody::Stored => None,
                    };
                    if let Some(body) = streamed {
                        self.metrics.coalesced.inc();
                        let mut parts = Response::new(()).into_parts().0;
                        parts.status = head.status;
                        parts.headers = head.headers.clone();
                        let body = http_body_util::StreamBody::new(
                            body.map(|frame| frame.map_err(BoxError::from)),
                        );
                        return (
                            Some(status.collapsed()),
                            to_client(parts, body.boxed_unsync()),
                        );
                    }
                    let left = self.coalesce_timeout.saturating_sub(waited.elapsed());
                    if fill.completed(left).await
                        && let Lookup::Fresh(entry) =
                            self.cache.lookup_tiered(&request.key, &request.parts).await
                    {
                        self.metrics.coalesced.inc();
                        let now = self.cache.now();
                        let response = from_cache(&self.cache, &entry, &request.parts, now);
                        return (Some(status.collapsed()), unvalidated(&entry, response));
                    }
                }
                if let Some(reply) = self.stored_meanwhile(&request, status).await {
                    return reply;
                }
                self.fetch_alone(request, status, None).await
            }
        }
    }

    /// The answer from the cache for a request that missed, when a fill
    /// stored a fresh response meanwhile (and the cache may answer).
    async fn stored_meanwhile(&self, request: &Exchange, status: CacheStatus) -> Option<Reply> {
        if self
            .fleet_gate
            .as_deref()
            .is_some_and(|g| g.access() == Access::Closed)
        {
            return None;
        }
        let Lookup::Fresh(entry) = self.cache.lookup_tiered(&request.key, &request.parts).await
        else {
            return None;
        };
        let now = self.cache.now();
        let response = from_cache(&self.cache, &entry, &request.parts, now);
        Some((Some(status.collapsed()), unvalidated(&entry, response)))
    }

    /// Fetches from the origin; a `leader` shares the answer with the
    /// requests that collapsed onto it, when it can be stored.
    pub(super) async fn fetch_alone(
        &self,
        request: Exchange,
        status: CacheStatus,
        mut leader: Option<Leader>,
    ) -> Reply {
        let is_get = request.parts.method == Method::GET;
        let wants_range = request.parts.headers.contains_key(RANGE);
        if is_get
            && !wants_range
            && !request.key.is_part()
            && let Some(reply) = self.complete_piece(&request, status, &mut leader).await
        {
            return reply;
        }
        // One range goes to the origin as it is; several, or a range of
        // another method, become a fetch of the whole object.
        let ranges_from_whole =
            wants_range && !(is_get && partial::single_range(&request.parts.headers));
        let mut headers = request.parts.headers.clone();
        if ranges_from_whole {
            headers.remove(RANGE);
            headers.remove(IF_RANGE);
        }
        let outgoing = request.origin_parts(&headers);
        let request_time = self.cache.now();
        let answer = match request.send_bodiless(outgoing).await {
            Ok(answer) => answer,
            Err(e) => return upstream_error(&e),
        };
        // An origin that ignores a slice's range sends the whole object:
        // it is never stored as a slice, and the slicing answer cuts the
        // client's range from it (`slice.rs`).
        if request.key.is_part() && answer.response.status() == StatusCode::OK {
            return (Some(status.detail(Detail::RangePassed)), relay(answer));
        }
        let oversized = answer
            .response
            .body()
            .size_hint()
            .exact()
            .is_none_or(|n| n > self.max_object_size as u64);
        if ranges_from_whole && oversized {
            drop(answer);
            let outgoing = request.origin_parts(&request.parts.headers);
            return match request.send_bodiless(outgoing).await {
                Ok(answer) => (Some(status.detail(Detail::RangePassed)), relay(answer)),
                Err(e) => upstream_error(&e),
            };
        }
        self.store_and_relay(request, answer, request_time, status, leader)
            .await
    }

    pub(super) async fn store_and_relay(
        &self,
        request: Exchange,
        answer: Answer,
        request_time: SystemTime,
        status: CacheStatus,
        leader: Option<Leader>,
    ) -> Reply {
        let response_time: SystemTime = self.cache.now();
        let Answer {
            response, lease, ..
        } = answer;
        let (mut parts, body) = response.into_parts();
        let body = OriginBody::new(body, lease);
        headers::strip_hop_by_hop(&mut parts.headers);
        // Compressed on the way into the cache, so once per stored object.
        // Its length is then unknown, but bounded by the origin's.
        let mut at_most = None;
        let body = match &self.compression {
            Some(compression) if request.parts.method == Method::GET && request.rule.compress => {
                let length = body.size_hint().exact();
                match compression.prepare(&request.parts.headers, &mut parts, length) {
                    Some(encoding) => {
                        at_most = length.map(super::compress::compressed_at_most);
                        self.metrics
                            .compressed
                            .with_label_values(&[encoding.token()])
                            .inc();
                        compression.encode(body.boxed_unsync(), encoding)
                    }
                    None => body.boxed_unsync(),
                }
            }
            _ => body.boxed_unsync(),
        };
        self.store_and_answer(
            request,
            parts,
            body,
            (request_time, response_time),
            at_most,
            status,
            leader,
        )
        .await
    }

    /// Stores an origin's answer (`parts` and `body`, prepared for the
    /// cache) when it may be stored, shares it with a `leader`'s followers,
    /// and answers the client: a 206 is stored as the URL's piece, and a
    /// range the client asked of a whole answer is cut from it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn store_and_answer(
        &self,
        request: Exchange,
        mut parts: http::response::Parts,
        body: ProxyBody,
        (request_time, response_time): (SystemTime, SystemTime),
        at_most: Option<u64>,
        status: CacheStatus,
        leader: Option<Leader>,
    ) -> Reply {
        let mut status = status;
        let body = if request.parts.method != Method::GET {
            body
        } else {
            let piece = if parts.status == StatusCode::PARTIAL_CONTENT && !request.key.is_part() {
                Some(self.piece_store(&request, &parts).await)
            } else {
                None
            };
            let (key, head, prefix) = match &piece {
                Some(piece) => (&piece.key, &piece.head, piece.prefix.clone()),
                None => (&request.key, &parts, Bytes::new()),
            };
            let fetched = Fetched {
                key,
                request: &request.parts,
                response: head,
                request_time,
                response_time,
            };
            match self.cache.admit(
                &fetched,
                request.rule.store_rules(
                    head.status.as_u16(),
                    head.headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok()),
                ),
                request.rule.key_fields(),
                body.size_hint().exact().map(|n| n + prefix.len() as u64),
                self.max_object_size as u64,
            ) {
                Ok(mut storing) => {
                    // A piece grown by this answer: the held bytes first.
                    if !prefix.is_empty() {
                        storing.push(&prefix);
                    }
                    status = status.stored();
                    // RFC 9111 §5.1, §4.2.3: an answer the origin took a
                    // while to send, or that came with an Age, is already
                    // that old; clients (and caches after this one) hear so.
                    let age = storing.age(self.cache.now()).as_secs();
                    if age > 0 {
                        parts
                            .headers
                            .insert(http::header::AGE, http::HeaderValue::from(age));
                    }
                    let sharing = leader.map(|leader| match at_most {
                        Some(bound) => leader.share_at_most(&storing, &parts, Some(bound)),
                        None => leader.share(&storing, &parts),
                    });
                    let storing = StoringBody::new(body, self.cache.clone(), storing);
                    match sharing {
                        Some(Sharing::Streamed(writer)) => share(writer, storing),
                        // Too large to stream at its slowest reader's
                        // pace: the followers read it from the cache once
                        // it is stored.
                        Some(Sharing::Stored(writer)) => storing.announcing(writer).boxed_unsync(),
                        None => storing.boxed_unsync(),
                    }
                }
                Err(reason) => {
                    status = status.detail(Detail::NotStored(reason));
                    if let Some(leader) = leader {
                        leader.decline_for(HIT_FOR_PASS);
                    }
                    body
                }
            }
        };
        // A range the client asked for, cut from the whole object as it streams.
        if request.parts.method == Method::GET
            && parts.status == StatusCode::OK
            && let Some(len) = body.size_hint().exact()
        {
            match range::evaluate(&request.parts.headers, len, &parts.headers) {
                Ranges::Whole => {}
                Ranges::Partial(ranges) if ranges.len() == 1 => {
                    let body = range::cut_one_range(&mut parts, body, ranges[0], len);
                    return (Some(status), to_client(parts, body));
                }
                // Several ranges of an object still arriving: the whole
                // object is an answer the RFC allows (§14.2).
                Ranges::Partial(_) => {}
                Ranges::Unsatisfiable => {
                    // The object still fills the cache behind the 416.
                    tokio::spawn(async move { drop(body.collect().await) });
                    return (Some(status), to_client_empty(parts, unsatisfiable(len)));
                }
            }
        }
        (Some(status), to_client(parts, body))
    }
}

/// How long a key whose answer could not be shared is fetched without
/// coalescing (hit-for-pass).
pub(super) const HIT_FOR_PASS: std::time::Duration = std::time::Duration::from_secs(30);

/// Shares a storable response with the requests collapsed onto it: a task
/// reads the origin's body into the cache and the fill, whoever's client
/// goes away, and every client (the leader's too) reads the fill.
pub(super) fn share(writer: FillWriter, mut storing: StoringBody<ProxyBody>) -> ProxyBody {
    // The leader's client reads from the first byte: its place is taken
    // before the first piece arrives.
    let body = writer.reader();
    tokio::spawn(async move {
        while let Some(frame) = storing.frame().await {
            match frame {
                Ok(frame) => {
                    if let Some(data) = frame.data_ref() {
                        writer.push(data.clone()).await;
                    }
                }
                // Dropping the writer fails the fill for every reader.
                Err(_) => return,
            }
        }
        // The entry is in the cache now; only then is the fill forgotten.
        writer.finish();
    });
    match body {
        Some(body) => {
            http_body_util::StreamBody::new(body.map(|frame| frame.map_err(BoxError::from)))
                .boxed_unsync()
        }
        // Not reached: nothing was pushed before the leader's place was taken.
        None => super::respond::empty(),
    }
}
