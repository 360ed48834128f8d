//! Revalidation as operations (RFC 9111 §4.3): the conditional request a
//! stored response is revalidated with ([`Entry::conditional`]), what the
//! origin's answer means for it ([`Cache::revalidated`]), and whether it
//! may stand in for an origin that could not be asked
//! ([`Entry::stale_on_failure`], RFC 5861 §4 and RFC 9111 §4.2.4).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{
    CONTENT_LENGTH, ETAG, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE,
    IF_UNMODIFIED_SINCE, LAST_MODIFIED, RANGE,
};
use http::{HeaderMap, HeaderName, Method, StatusCode};

use crate::Cache;
use crate::entry::Entry;
use crate::fetched::Fetched;

/// Why a stored response answers stale when the origin could not be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleReason {
    /// Within its stale-if-error window, or still fresh (RFC 5861 §4).
    IfError,
    /// Within the rule's window for an origin that cannot be reached
    /// (RFC 9111 §4.2.4, a disconnected cache).
    Unreachable,
}

/// What the origin's answer to a revalidation means for the stored response.
#[derive(Debug)]
pub enum Revalidated {
    /// The stored response was freshened, by a 304 that names it (RFC 9111
    /// §4.3.4) or by a 200 to a HEAD that agrees with it (§4.3.5): answer
    /// with this entry.
    Refreshed(Arc<Entry>),
    /// The origin answered 500, 502, 503 or 504 and the stored response may
    /// be used instead (RFC 5861 §4): answer with it, stale.
    StaleIfError,
    /// A 304 about another representation than the one stored (§4.3.4): it
    /// updates nothing, and the response must be fetched whole.
    OtherRepresentation,
    /// The answer takes the stored response's place (§4.3.3): relay it, and
    /// store it when it may be stored.
    Replaced,
}

/// A client's preconditions and range: the fields a conditional request
/// of the cache's own replaces, and whose presence makes a request the
/// client's conditional rather than the cache's.
pub const CLIENT_CONDITIONS: [HeaderName; 6] = [
    IF_NONE_MATCH,
    IF_MODIFIED_SINCE,
    IF_MATCH,
    IF_UNMODIFIED_SINCE,
    IF_RANGE,
    RANGE,
];

impl Entry {
    /// The request fields to revalidate this entry with (RFC 9111 §4.3.1):
    /// `request`'s own, without the client's preconditions and range, with
    /// the entry's validators: `If-None-Match` from its ETag and
    /// `If-Modified-Since` from its Last-Modified.
    pub fn conditional(&self, request: &HeaderMap) -> HeaderMap {
        let mut headers = request.clone();
        for name in &CLIENT_CONDITIONS {
            headers.remove(name);
        }
        if let Some(etag) = self.headers().get(ETAG.as_str()) {
            headers.insert(IF_NONE_MATCH, etag);
        }
        if let Some(modified) = self.headers().get(LAST_MODIFIED.as_str()) {
            headers.insert(IF_MODIFIED_SINCE, modified);
        }
        headers
    }

    /// Whether, and why, the entry may answer at `now` for an origin that
    /// gave no answer at all: stale-if-error first (RFC 5861 §4), then a
    /// staleness of at most `unreachable` (RFC 9111 §4.2.4). None when
    /// neither allows it, and never past must-revalidate, proxy-revalidate,
    /// s-maxage or no-cache.
    pub fn stale_on_failure(&self, now: SystemTime, unreachable: Duration) -> Option<StaleReason> {
        if self.stale_if_error(now) {
            Some(StaleReason::IfError)
        } else if self.stale_if_unreachable(now, unreachable) {
            Some(StaleReason::Unreachable)
        } else {
            None
        }
    }
}

impl Cache {
    /// What the origin's answer to a revalidation of `stored` means: the
    /// errors stale-if-error covers (RFC 5861 §4), then a 304 (RFC 9111
    /// §4.3.4) or a 200 to a HEAD (§4.3.5) that freshens it, and otherwise
    /// a replacement (§4.3.3). A freshened entry is stored. The answer's
    /// hop-by-hop fields are already removed.
    pub fn revalidated(&self, stored: &Arc<Entry>, fetched: &Fetched<'_>) -> Revalidated {
        let status = fetched.response.status;
        // RFC 5861 §4: these answers count as errors too.
        if matches!(status.as_u16(), 500 | 502 | 503 | 504)
            && stored.stale_if_error(fetched.response_time)
        {
            return Revalidated::StaleIfError;
        }
        if status == StatusCode::NOT_MODIFIED {
            return match self.refresh(stored, fetched) {
                Some(refreshed) => Revalidated::Refreshed(refreshed),
                None => Revalidated::OtherRepresentation,
            };
        }
        // RFC 9111 §4.3.5: a 200 to a HEAD freshens the stored GET response
        // when the validators it carries (and its Content-Length) agree with
        // the stored ones; otherwise the stored response stays stale.
        if fetched.request.method == Method::HEAD
            && status == StatusCode::OK
            && head_agrees(stored, &fetched.response.headers)
        {
            let refreshed = self.refresh(stored, fetched);
            return Revalidated::Refreshed(refreshed.unwrap_or_else(|| stored.clone()));
        }
        Revalidated::Replaced
    }
}

/// Whether a 200 to a HEAD describes the stored response (RFC 9111 §4.3.5):
/// each validator it carries (ETag, Last-Modified) and its Content-Length,
/// if it has one, equal the stored ones.
fn head_agrees(entry: &Entry, head: &HeaderMap) -> bool {
    let same = |name: HeaderName| {
        head.get(&name)
            .is_none_or(|value| entry.headers().get(name.as_str()).as_ref() == Some(value))
    };
    let length = head
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim().parse::<u64>().ok() == Some(entry.body_len()));
    same(ETAG) && same(LAST_MODIFIED) && length
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::{request, response};

    use super::*;
    use crate::Lookup;
    use crate::testing::*;

    fn answer(status: u16, headers: &[(&str, &str)]) -> response::Parts {
        let mut res = ok(headers);
        res.status = StatusCode::from_u16(status).unwrap();
        res
    }

    fn head(headers: &[(&str, &str)]) -> request::Parts {
        let mut req = get(headers);
        req.method = Method::HEAD;
        req
    }

    /// Stores a response with `headers` and a four-byte body, and lets
    /// it go stale.
    fn stale_entry(headers: &[(&str, &str)]) -> (Cache, Arc<Entry>) {
        let (cache, clock) = setup();
        let storing = admitted(&cache, &key(), &get(&[]), &ok(headers)).unwrap();
        let entry = cache.insert(storing, Bytes::from_static(b"body"));
        clock.advance(Duration::from_secs(20));
        (cache, entry)
    }

    const STORED: &[(&str, &str)] = &[
        ("cache-control", "max-age=10, stale-if-error=60"),
        ("etag", "\"v1\""),
        ("last-modified", "Tue, 01 Sep 2026 00:00:00 GMT"),
        ("x-version", "1"),
    ];

    /// RFC 9111 §4.3.1: the cache's own validators go with the request,
    /// in place of the client's preconditions and range.
    #[test]
    fn the_conditional_request_carries_the_stored_validators() {
        let (_, entry) = stale_entry(STORED);
        let client = get(&[
            ("if-none-match", "\"client\""),
            ("if-match", "\"a\""),
            ("if-unmodified-since", "Mon, 31 Aug 2026 00:00:00 GMT"),
            ("if-range", "\"a\""),
            ("range", "bytes=0-1"),
            ("accept", "text/html"),
        ]);
        let headers = entry.conditional(&client.headers);
        assert_eq!(headers.get(IF_NONE_MATCH).unwrap(), "\"v1\"");
        assert_eq!(
            headers.get(IF_MODIFIED_SINCE).unwrap(),
            "Tue, 01 Sep 2026 00:00:00 GMT"
        );
        for gone in [IF_MATCH, IF_UNMODIFIED_SINCE, IF_RANGE, RANGE] {
            assert!(!headers.contains_key(&gone), "{gone}");
        }
        assert_eq!(headers.get("accept").unwrap(), "text/html");
        let (_, bare) = stale_entry(&[("cache-control", "max-age=10")]);
        let headers = bare.conditional(&client.headers);
        assert!(!headers.contains_key(IF_NONE_MATCH) && !headers.contains_key(IF_MODIFIED_SINCE));
    }

    /// RFC 9111 §4.3.4: a 304 that names the stored representation
    /// freshens it and keeps its body; one that names another updates
    /// nothing and the response is fetched whole.
    #[test]
    fn a_304_refreshes_or_names_another_representation() {
        let (cache, entry) = stale_entry(STORED);
        let req = get(&[]);
        let other = answer(304, &[("etag", "\"v2\"")]);
        assert!(matches!(
            cache.revalidated(&entry, &fetched(&cache, &key(), &req, &other)),
            Revalidated::OtherRepresentation
        ));
        assert!(matches!(cache.lookup(&key(), &req), Lookup::Stale(_)));
        let same = answer(
            304,
            &[
                ("etag", "\"v1\""),
                ("cache-control", "max-age=100"),
                ("x-version", "2"),
            ],
        );
        let Revalidated::Refreshed(refreshed) =
            cache.revalidated(&entry, &fetched(&cache, &key(), &req, &same))
        else {
            panic!("refreshed")
        };
        assert_eq!(refreshed.headers().get("x-version").unwrap(), "2");
        assert_eq!(refreshed.body_len(), 4);
        assert!(matches!(cache.lookup(&key(), &req), Lookup::Fresh(_)));
    }

    /// RFC 5861 §4: a 500, 502, 503 or 504 lets an entry within its
    /// stale-if-error window answer; other errors, and entries past it,
    /// are replaced by the answer (RFC 9111 §4.3.3).
    #[test]
    fn server_errors_within_stale_if_error_keep_the_stored_response() {
        let (cache, entry) = stale_entry(STORED);
        let req = get(&[]);
        let judge = |entry: &Arc<Entry>, status: u16| {
            let res = answer(status, &[]);
            cache.revalidated(entry, &fetched(&cache, &key(), &req, &res))
        };
        for status in [500, 502, 503, 504] {
            assert!(
                matches!(judge(&entry, status), Revalidated::StaleIfError),
                "{status}"
            );
        }
        for status in [501, 404, 200] {
            assert!(
                matches!(judge(&entry, status), Revalidated::Replaced),
                "{status}"
            );
        }
        let (cache, plain) = stale_entry(&[("cache-control", "max-age=10")]);
        let res = answer(503, &[]);
        assert!(matches!(
            cache.revalidated(&plain, &fetched(&cache, &key(), &req, &res)),
            Revalidated::Replaced
        ));
    }

    /// RFC 9111 §4.3.5: a 200 to a HEAD freshens the stored response only
    /// when each validator it carries and its Content-Length agree with
    /// the stored ones; a 200 to a GET replaces it (§4.3.3).
    #[test]
    fn a_200_to_a_head_freshens_only_when_it_agrees() {
        let req = head(&[]);
        let judge = |headers: &[(&str, &str)]| {
            let (cache, entry) = stale_entry(STORED);
            let res = answer(200, headers);
            let outcome = cache.revalidated(&entry, &fetched(&cache, &key(), &req, &res));
            let fresh = matches!(cache.lookup(&key(), &get(&[])), Lookup::Fresh(_));
            (outcome, fresh)
        };
        let agreeing: &[(&str, &str)] = &[
            ("etag", "\"v1\""),
            ("content-length", "4"),
            ("cache-control", "max-age=100"),
        ];
        let (outcome, fresh) = judge(agreeing);
        assert!(matches!(outcome, Revalidated::Refreshed(_)) && fresh);
        let (outcome, _) = judge(&[("cache-control", "max-age=100")]);
        assert!(
            matches!(outcome, Revalidated::Refreshed(_)),
            "no validator to disagree"
        );
        for disagreeing in [
            &[("etag", "\"v2\""), ("content-length", "4")][..],
            &[("etag", "\"v1\""), ("content-length", "5")][..],
            &[("last-modified", "Wed, 02 Sep 2026 00:00:00 GMT")][..],
        ] {
            let (outcome, fresh) = judge(disagreeing);
            assert!(
                matches!(outcome, Revalidated::Replaced) && !fresh,
                "{disagreeing:?}"
            );
        }
        let (cache, entry) = stale_entry(STORED);
        let res = answer(200, agreeing);
        assert!(matches!(
            cache.revalidated(&entry, &fetched(&cache, &key(), &get(&[]), &res)),
            Revalidated::Replaced
        ));
    }

    /// RFC 5861 §4 and RFC 9111 §4.2.4: with no answer from the origin,
    /// stale-if-error decides first, then the rule's window for an
    /// unreachable origin; must-revalidate forbids both.
    #[test]
    fn an_origin_that_failed_is_stood_in_for_within_the_windows() {
        let (cache, clock) = setup();
        let store = |cc: &str| {
            let storing = admitted(&cache, &key(), &get(&[]), &ok(&[("cache-control", cc)]));
            cache.insert(storing.unwrap(), Bytes::new())
        };
        let with_error = store("max-age=10, stale-if-error=30");
        let plain = store("max-age=10");
        let strict = store("max-age=10, must-revalidate");
        let window = Duration::from_secs(300);
        let now = cache.now();
        assert_eq!(
            strict.stale_on_failure(now, window),
            Some(StaleReason::IfError),
            "fresh answers on error"
        );
        clock.advance(Duration::from_secs(30));
        let now = cache.now();
        assert_eq!(
            with_error.stale_on_failure(now, window),
            Some(StaleReason::IfError)
        );
        assert_eq!(
            plain.stale_on_failure(now, window),
            Some(StaleReason::Unreachable)
        );
        assert_eq!(strict.stale_on_failure(now, window), None);
        assert_eq!(plain.stale_on_failure(now, Duration::ZERO), None);
        clock.advance(Duration::from_secs(300));
        let now = cache.now();
        assert_eq!(with_error.stale_on_failure(now, window), None);
        assert_eq!(plain.stale_on_failure(now, window), None);
    }
}
