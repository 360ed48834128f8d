//! Validation on a Vary miss (RFC 9111 §4.3.1, §4.3.4): a request whose
//! Vary fields match none of a URL's stored variants may still be answered
//! by one of them. The request goes to the origin with the entity tags of
//! the stored variants in `If-None-Match` ([`Cache::vary_candidates`],
//! [`candidates_conditional`]); a 304 names the one the origin would send,
//! which is freshened and stored for this request's values too
//! ([`Cache::select_variant`]).

use std::sync::Arc;

use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, ETAG, IF_NONE_MATCH};
use http::{HeaderMap, HeaderValue, request};

use crate::Cache;
use crate::disk::Marker;
use crate::entry::{Entry, Variant};
use crate::etag::EntityTag;
use crate::fetched::Fetched;
use crate::key::CacheKey;
use crate::memory::Stored;
use crate::purge::Verdict;
use crate::vary::{self, VaryMarker};

impl Cache {
    /// The stored variants of `key` that a request that missed on its Vary
    /// fields may be validated against: those under the URL's current
    /// marker (in memory, or on disk only), not purged, with an entity
    /// tag, and in a content coding `req` accepts (a copy in a coding the
    /// client cannot read must never answer it, whatever the origin says
    /// of the tag).
    pub async fn vary_candidates(&self, key: &CacheKey, req: &request::Parts) -> Vec<Arc<Entry>> {
        let Some(Stored::Variants(marker)) = self.memory.get(key.hash()) else {
            return Vec::new();
        };
        if marker.key != key.text() {
            return Vec::new();
        }
        let mut found = Vec::new();
        for hash in marker.variants() {
            found.extend(self.held(&hash).await.map(|(entry, _)| entry));
        }
        found
            .into_iter()
            .filter(|entry| {
                entry.key() == key.text()
                    && entry.variant().is_some_and(|v| v.marker == marker.id)
                    && self.purges.judge(entry) != Verdict::Gone
                    && entry
                        .headers()
                        .get(ETAG.as_str())
                        .as_ref()
                        .and_then(EntityTag::of)
                        .is_some()
                    && coding_accepted(entry, &req.headers)
            })
            .collect()
    }

    /// A 304 to a request validated against `candidates` (RFC 9111
    /// §4.3.4): the candidate whose entity tag it carries (or the only one
    /// offered, when it carries none), freshened, and a copy of it stored
    /// as the variant for this request's values of the Vary fields; None
    /// when it names none of them.
    pub fn select_variant(
        &self,
        candidates: &[Arc<Entry>],
        fetched: &Fetched<'_>,
    ) -> Option<Arc<Entry>> {
        let given = fetched.response.headers.get(ETAG);
        let selected = match given.and_then(EntityTag::of) {
            // The same bytes first, then the weak comparison.
            Some(named) => candidates
                .iter()
                .find(|entry| entry.headers().get(ETAG.as_str()).as_ref() == given)
                .or_else(|| {
                    candidates.iter().find(|entry| {
                        entry
                            .headers()
                            .get(ETAG.as_str())
                            .as_ref()
                            .and_then(EntityTag::of)
                            .is_some_and(|held| held.weak_eq(&named))
                    })
                })?,
            // A 304 without a validator to a request that offered one tag
            // can be about that one only; with several it names none.
            None if candidates.len() == 1 => &candidates[0],
            None => return None,
        };
        let refreshed = self.refresh(selected, fetched)?;
        let key = fetched.key;
        let Some(Stored::Variants(marker)) = self.memory.get(key.hash()) else {
            return Some(refreshed);
        };
        if marker.key != key.text() {
            return Some(refreshed);
        }
        let secondary = vary::secondary(&marker.names, &marker.cookies, &fetched.request.headers);
        let hash = vary::secondary_hash(key.text(), &secondary);
        let copy = Arc::new(Entry::clone(&refreshed).into_variant(Variant {
            marker: marker.id,
            text: secondary.into(),
        }));
        self.add_variant(*key.hash(), &marker, hash);
        self.keep(hash, &copy);
        Some(copy)
    }
}

impl Cache {
    /// Records the variant `hash` under `marker` (stored under `primary`):
    /// the ones the bound pushes out leave memory, and the marker is
    /// written to disk again when its list changed, so that the URL's
    /// variants are known after a restart.
    pub(crate) fn add_variant(&self, primary: [u8; 32], marker: &VaryMarker, hash: [u8; 32]) {
        let known = marker.variants().contains(&hash);
        for dropped in marker.remember(hash) {
            self.memory.remove(&dropped);
        }
        if !known && let Some(disk) = self.disk.get() {
            disk.put_marker(primary, &Marker::of(marker));
        }
    }
}

/// The request fields for validating `candidates` on a Vary miss: the
/// request's own, with their entity tags as `If-None-Match`.
pub fn candidates_conditional(candidates: &[Arc<Entry>], request: &HeaderMap) -> HeaderMap {
    let mut headers = request.clone();
    let tags: Vec<String> = candidates
        .iter()
        .filter_map(|entry| entry.headers().get(ETAG.as_str()))
        .filter_map(|tag| tag.to_str().ok().map(str::to_owned))
        .collect();
    if let Ok(value) = HeaderValue::from_str(&tags.join(", ")) {
        headers.insert(IF_NONE_MATCH, value);
    }
    headers
}

/// Whether the entry's content coding (none, or `identity`, always is) is
/// one `request` accepts with a weight above zero (RFC 9110 §12.5.3).
fn coding_accepted(entry: &Entry, request: &HeaderMap) -> bool {
    let Some(coding) = entry.headers().get(CONTENT_ENCODING.as_str()) else {
        return true;
    };
    let Ok(coding) = coding.to_str() else {
        return false;
    };
    let coding = coding.trim();
    if coding.is_empty() || coding.eq_ignore_ascii_case("identity") {
        return true;
    }
    request
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|member| {
            let mut parts = member.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case(coding) || name == "*") && !refused
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    /// RFC 9110 §12.5.3: a coding is accepted when listed (or `*`) with a
    /// weight above zero; no coding and `identity` always are.
    #[test]
    fn a_coding_is_accepted_only_with_a_weight_above_zero() {
        let (cache, _) = setup();
        let gzip = store_now(
            &cache,
            &[
                ("cache-control", "max-age=60"),
                ("content-encoding", "gzip"),
            ],
        )
        .unwrap();
        let plain = store_now(&cache, &[("cache-control", "max-age=60")]).unwrap();
        for (accept, expected) in [
            ("gzip", true),
            ("br, GZIP;q=0.5", true),
            ("*", true),
            ("gzip;q=0", false),
            ("gzip; q=0.0, br", false),
            ("identity", false),
            ("", false),
        ] {
            let request = get(&[("accept-encoding", accept)]);
            assert_eq!(
                coding_accepted(&gzip, &request.headers),
                expected,
                "{accept:?}"
            );
            assert!(coding_accepted(&plain, &request.headers));
        }
    }
}
