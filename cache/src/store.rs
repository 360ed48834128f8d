//! Storing a response: [`Cache::admit`] decides whether it may be stored
//! (the policy, the rule's overrides and key fields, the size limit) and
//! begins a [`Storing`]; the body then arrives piece by piece
//! ([`Storing::push`], [`Cache::finish`]) or whole ([`Cache::insert`]), and
//! the entry is committed to memory, when it fits, and to disk.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};

use crate::Cache;
use crate::disk::ChunkWriter;
use crate::entry::{Body, CHUNK, Entry, StoredHeaders, Variant};
use crate::fetched::Fetched;
use crate::freshness::{self, Directives, Freshness};
use crate::key::CacheKey;
use crate::memory::Stored;
use crate::partial::ContentRange;
use crate::policy::{NotStored, StaleUse, StoreRules, storage_policy};
use crate::purge::Verdict;
use crate::vary::{self, KeyFields, Variation, VaryMarker};

/// A response that may be stored once its body has arrived whole.
#[derive(Debug)]
pub(crate) struct PendingEntry {
    key: CacheKey,
    status: StatusCode,
    headers: StoredHeaders,
    freshness: Freshness,
    directives: Directives,
    stale: StaleUse,
    rules: StoreRules,
    /// What its variant is made of (nothing, when it does not vary).
    variation: Variation,
    seq: u64,
    tags: Vec<String>,
}

/// A response being stored as its body arrives, from [`Cache::admit`].
pub struct Storing {
    pending: PendingEntry,
    /// The body's declared length, when it has one.
    expected: Option<u64>,
    /// The body so far, while it fits the memory tier.
    copy: Option<BytesMut>,
    /// The body's chunks on their way to disk.
    chunks: Option<ChunkWriter>,
    len: u64,
    limit: u64,
    memory_limit: usize,
}

impl std::fmt::Debug for Storing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storing")
            .field("key", &self.pending.key)
            .field("expected", &self.expected)
            .field("len", &self.len)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Storing {
    /// Adds the next bytes of the body; false once nothing will be stored
    /// (the body grew past the limit, or past memory without a disk tier).
    pub fn push(&mut self, data: &[u8]) -> bool {
        self.len += data.len() as u64;
        if self.len > self.limit {
            self.copy = None;
            self.chunks = None;
            return false;
        }
        if let Some(copy) = &mut self.copy {
            if self.len > self.memory_limit as u64 {
                self.copy = None;
            } else {
                copy.extend_from_slice(data);
            }
        }
        if let Some(chunks) = &mut self.chunks {
            chunks.push(data);
        }
        self.copy.is_some() || self.chunks.is_some()
    }

    /// Once the body has run ahead of the disk, a future to wait on before
    /// reading more of it.
    pub fn backlog(&mut self) -> Option<futures_util::future::BoxFuture<'static, ()>> {
        self.chunks.as_ref()?.tier().backlog()
    }

    /// The body's declared length, when it has one.
    pub(crate) fn expected(&self) -> Option<u64> {
        self.expected
    }

    /// The response's current age (RFC 9111 §4.2.3): the origin's `Age`
    /// and the time the origin took to answer, and since.
    pub fn age(&self, now: SystemTime) -> Duration {
        self.pending.freshness.age(now)
    }

    /// What the response's variant is made of.
    pub(crate) fn variation(&self) -> &Variation {
        &self.pending.variation
    }
}

impl Cache {
    /// Begins storing an origin's answer, or says why it must not be
    /// stored: the storage policy (RFC 9111 §3) under the rule's
    /// overrides `rules`, then the size: a body whose declared `length` is
    /// over `limit` is [`NotStored::TooLarge`]. The request fields and
    /// cookies the rule keys on (`key_fields`) make variants as Vary does.
    /// Feed the body with [`Storing::push`], then hand it to
    /// [`Cache::finish`]; a body held whole goes to [`Cache::insert`].
    pub fn admit(
        &self,
        fetched: &Fetched<'_>,
        rules: StoreRules,
        key_fields: &KeyFields,
        length: Option<u64>,
        limit: u64,
    ) -> Result<Storing, NotStored> {
        // RFC 9111 §3.3: a 206 is stored only as a part of its URL's
        // object (and a part holds nothing else), with one range of a known
        // length and exactly that range's bytes: a body of another or an
        // unknown length would be stored as bytes it is not.
        let partial = fetched.response.status == StatusCode::PARTIAL_CONTENT;
        if partial != fetched.key.is_part()
            || (partial
                && ContentRange::of(&fetched.response.headers)
                    .is_none_or(|r| Some(r.len()) != length))
        {
            return Err(NotStored::Headers);
        }
        let pending = self.prepare(fetched, rules, key_fields)?;
        if length.is_some_and(|n| n > limit) {
            return Err(NotStored::TooLarge);
        }
        Ok(self.storing(pending, length, limit))
    }

    /// Builds an entry for a complete response, or says why it must not be
    /// stored.
    fn prepare(
        &self,
        fetched: &Fetched<'_>,
        rules: StoreRules,
        key_fields: &KeyFields,
    ) -> Result<PendingEntry, NotStored> {
        let Fetched {
            key,
            request: req,
            response,
            request_time,
            response_time,
        } = *fetched;
        let mut res = response.clone();
        clamp_age(&mut res.headers);
        // RFC 9111 §4.1: `Vary: *` never matches a later request.
        let names = vary::names(&res.headers).ok_or(NotStored::Headers)?;
        // A response kept apart by the cookie (the rule keys on cookies, or
        // the origin varies on Cookie) answers only that cookie again.
        let rules = StoreRules {
            store_with_cookie: rules.store_with_cookie
                || !key_fields.cookies.is_empty()
                || names.contains(&http::header::COOKIE),
            ..rules
        };
        let options = self.options.load();
        // A part (a 206, checked by `admit`) is judged as the
        // representation it is part of.
        let built = if res.status == StatusCode::PARTIAL_CONTENT {
            let mut whole = res.clone();
            whole.status = StatusCode::OK;
            storage_policy(req, &whole, response_time, &options, rules)?
        } else {
            storage_policy(req, &res, response_time, &options, rules)?
        };
        let freshness = Freshness::compute(
            res.status,
            &built.view,
            request_time,
            response_time,
            options.heuristic(),
        );
        let directives = Directives::from_headers(&built.view);
        // RFC 9111 §5.2.2.7: a shared cache does not store the fields a
        // qualified `private` names.
        for field in &built.private {
            res.headers.remove(field.as_str());
        }
        let variation = Variation::new(names, key_fields, &req.headers);
        let tags = self.tags_of(&res.headers);
        Ok(PendingEntry {
            key: key.clone(),
            status: res.status,
            headers: StoredHeaders::from_map(&res.headers),
            freshness,
            directives,
            stale: built.stale,
            rules,
            variation,
            seq: self.purges.next_seq(),
            tags,
        })
    }

    /// The tags a response carries in the configured tag headers, split on
    /// commas and white space (Surrogate-Key and Cache-Tag both fit).
    fn tags_of(&self, headers: &HeaderMap) -> Vec<String> {
        let mut tags: Vec<String> = self
            .options
            .load()
            .tag_headers
            .iter()
            .flat_map(|name| headers.get_all(name))
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(|c: char| c == ',' || c.is_whitespace()))
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        tags.sort_unstable();
        tags.dedup();
        tags.shrink_to_fit();
        tags
    }

    /// Stores a response whose body is held whole, under a rule's
    /// overrides and key fields: [`Cache::admit`], then [`Cache::insert`].
    pub fn store_whole(
        &self,
        fetched: &Fetched<'_>,
        rules: StoreRules,
        key_fields: &KeyFields,
        body: Bytes,
    ) -> Result<Arc<Entry>, NotStored> {
        let storing = self.admit(
            fetched,
            rules,
            key_fields,
            Some(body.len() as u64),
            u64::MAX,
        )?;
        Ok(self.insert(storing, body))
    }

    /// Stores an admitted response whose body is held whole: under the
    /// URL's key, or as one variant of it. Whatever `storing` was fed is
    /// set aside for `body`.
    pub fn insert(&self, storing: Storing, body: Bytes) -> Arc<Entry> {
        let pending = storing.pending;
        let chunks = match self.disk.get() {
            Some(disk) if body.len() > CHUNK => {
                let mut writer = disk.chunk_writer(*pending.key.hash());
                writer.push(&body);
                writer.finish(body.len() as u64).ok()
            }
            _ => None,
        };
        let body = match chunks {
            Some(chunks) => Body::Both(body, Box::new(chunks)),
            None => Body::Memory(body),
        };
        self.commit(pending, body)
    }

    /// Begins storing a response whose body is still to arrive. Bodies up
    /// to `limit` bytes are stored: in memory when they fit there, and on
    /// disk, chunk by chunk as they arrive, when there is a disk tier.
    fn storing(&self, pending: PendingEntry, expected: Option<u64>, limit: u64) -> Storing {
        let memory_limit = self.memory_object_max();
        let copy = (expected.is_none_or(|n| n <= memory_limit as u64)).then(|| {
            let capacity = expected.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
            BytesMut::with_capacity(capacity.min(memory_limit))
        });
        let chunks = self
            .disk
            .get()
            .map(|disk| disk.chunk_writer(*pending.key.hash()));
        Storing {
            pending,
            expected,
            copy,
            chunks,
            len: 0,
            limit,
            memory_limit,
        }
    }

    /// Stores a response whose body has ended cleanly.
    pub fn finish(&self, storing: Storing) -> Option<Arc<Entry>> {
        let Storing {
            pending,
            copy,
            chunks,
            len,
            ..
        } = storing;
        let body = match (copy, chunks.map(|w| w.finish(len))) {
            (Some(copy), Some(Ok(chunks))) => Body::Both(copy.freeze(), Box::new(chunks)),
            (Some(copy), _) => Body::Memory(copy.freeze()),
            (None, Some(Ok(chunks))) => Body::Disk(Box::new(chunks)),
            (None, Some(Err(inline))) => Body::Memory(inline),
            (None, None) => return None,
        };
        Some(self.commit(pending, body))
    }

    /// Stores an entry in memory when its body is there and fits, and on
    /// disk (its head, after the body's chunks).
    fn commit(&self, pending: PendingEntry, body: Body) -> Arc<Entry> {
        let PendingEntry {
            key,
            status,
            headers,
            freshness,
            directives,
            stale,
            rules,
            variation,
            seq,
            tags,
        } = pending;
        let entry = Entry {
            key: key.text().into(),
            status,
            headers,
            body,
            freshness,
            directives: directives.for_entry(),
            stale,
            rules: rules.shared(),
            variant: None,
            seq,
            tags,
            primary: *key.primary(),
        };
        // A purge that arrived while this response was on its way wins.
        if self.purges.judge(&entry) == Verdict::Gone {
            return Arc::new(entry);
        }
        let (hash, entry) = if variation.is_empty() {
            (*key.hash(), entry)
        } else {
            let Variation {
                names: vary,
                cookies,
                text: variant,
            } = variation;
            let marker = match self.memory.get(key.hash()) {
                Some(Stored::Variants(marker))
                    if marker.key == key.text()
                        && marker.names == vary
                        && marker.cookies == cookies =>
                {
                    marker
                }
                _ => {
                    let marker = Arc::new(VaryMarker::new(key.text().to_owned(), vary, cookies));
                    self.memory
                        .insert(*key.hash(), Stored::Variants(marker.clone()));
                    marker
                }
            };
            let hash = vary::secondary_hash(key.text(), &variant);
            self.add_variant(*key.hash(), &marker, hash);
            let variant = Variant {
                marker: marker.id,
                text: variant.into_boxed_str(),
            };
            (hash, entry.into_variant(variant))
        };
        let entry = Arc::new(entry);
        if key.is_part() {
            self.parted.insert(*key.primary(), ());
        }
        if entry
            .resident_body()
            .is_some_and(|body| body.len() <= self.memory_object_max())
        {
            self.store(hash, entry.clone());
        }
        if let Some(disk) = self.disk.get() {
            // Written after its chunks; should the store have dropped one
            // (its queue full), the object reads as a miss.
            disk.put_object(hash, &entry);
        }
        entry
    }

    /// Puts an object in memory and in the purge index.
    pub(crate) fn store(&self, hash: [u8; 32], entry: Arc<Entry>) {
        self.purges.add(hash, &entry);
        self.memory.insert(hash, Stored::Object(entry));
    }
}

/// Leaves `Age` as one number of at most 2^31 seconds (RFC 9111 §1.2.2),
/// the first member of a list (§5.1), so that age arithmetic can never
/// overflow; a value that is not a number is dropped.
pub(crate) fn clamp_age(headers: &mut HeaderMap) {
    match freshness::age_value(headers) {
        Some(age) => {
            headers.insert(http::header::AGE, http::HeaderValue::from(age));
        }
        None => {
            headers.remove(http::header::AGE);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::response;

    use super::*;
    use crate::Lookup;
    use crate::testing::*;
    use crate::vary::MAX_VARIANTS;

    /// RFC 9213 §2.1: the first targeted field present replaces
    /// Cache-Control and Expires for this cache.
    #[test]
    fn cdn_cache_control_takes_precedence() {
        let (cache, _) = setup();
        let ttl = |headers: &[(&str, &str)]| {
            store_now(&cache, headers).map(|entry| entry.time_to_live(cache.now()).as_secs())
        };
        assert_eq!(
            ttl(&[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=600")
            ]),
            Ok(600)
        );
        assert!(
            ttl(&[
                ("cache-control", "max-age=600"),
                ("cdn-cache-control", "no-store")
            ])
            .is_err()
        );
        assert_eq!(
            ttl(&[
                ("cache-control", "max-age=5"),
                ("surrogate-control", "max-age=60")
            ]),
            Ok(60)
        );
        assert_eq!(
            ttl(&[
                ("cdn-cache-control", "max-age=10"),
                ("surrogate-control", "max-age=60")
            ]),
            Ok(10),
            "list order decides"
        );
        assert_eq!(
            ttl(&[("cache-control", "max-age=5"), ("cdn-cache-control", " ")]),
            Ok(5),
            "empty value ignored"
        );
    }

    /// RFC 9111 §5.2.2.7: a qualified `private` keeps the fields it names
    /// out of the shared copy and lets the rest be stored, Set-Cookie
    /// included; an unqualified one keeps the response out.
    #[test]
    fn a_qualified_private_stores_the_rest() {
        let (cache, _) = setup();
        let stored = |headers: &[(&str, &str)]| store_now(&cache, headers);
        let entry = stored(&[
            (
                "cache-control",
                "max-age=90, private=\"Set-Cookie, x-user\"",
            ),
            ("set-cookie", "session=1"),
            ("x-user", "ann"),
            ("x-kept", "yes"),
        ])
        .expect("stored");
        assert_eq!(entry.time_to_live(cache.now()).as_secs(), 90);
        assert!(!entry.headers().contains_key("set-cookie"));
        assert!(!entry.headers().contains_key("x-user"));
        assert_eq!(entry.headers().get("x-kept").unwrap(), "yes");
        assert!(stored(&[("cache-control", "max-age=90, private")]).is_err());
        assert!(
            stored(&[
                ("cache-control", "max-age=90, private=\"x-user\""),
                ("set-cookie", "a=1")
            ])
            .is_err(),
            "Set-Cookie not named: the default keeps the response out"
        );
    }

    /// RFC 9213 §2.1: a targeted field is a Structured Field Dictionary. One
    /// that does not parse is ignored, as if absent; a directive whose value
    /// has the wrong type is ignored; lines are joined before parsing.
    #[test]
    fn targeted_fields_are_structured_dictionaries() {
        let (cache, _) = setup();
        let ttl = |headers: &[(&str, &str)]| {
            store_now(&cache, headers).map(|entry| entry.time_to_live(cache.now()).as_secs())
        };
        for broken in [
            "max-age=600, &&&&&",
            "max-age =600",
            "max-age= 600",
            "max-age=600;",
        ] {
            assert!(
                ttl(&[("cache-control", "no-store"), ("cdn-cache-control", broken)]).is_err(),
                "{broken:?} does not parse, so Cache-Control decides"
            );
            assert_eq!(
                ttl(&[
                    ("cache-control", "max-age=7"),
                    ("cdn-cache-control", broken)
                ]),
                Ok(7),
                "{broken:?}"
            );
        }
        // The field parses; its max-age is a String, so it is ignored, and
        // Cache-Control is not consulted.
        assert_eq!(
            ttl(&[
                ("cache-control", "max-age=7"),
                ("cdn-cache-control", "max-age=\"600\"")
            ]),
            Ok(0)
        );
        assert_eq!(
            ttl(&[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "public"),
                ("cdn-cache-control", "max-age=90")
            ]),
            Ok(90),
            "two lines, one dictionary"
        );
        assert_eq!(
            ttl(&[("cdn-cache-control", "max-age=90;a=1, must-revalidate")]),
            Ok(90),
            "parameters are ignored"
        );
        assert!(
            ttl(&[("cdn-cache-control", "max-age=90, private=(\"x-user\")")]).is_ok(),
            "a qualified private keeps the rest storable"
        );
    }

    #[test]
    fn vary_star_is_never_stored_and_variants_are_bounded() {
        let (cache, _) = setup();
        let star = ok(&[("cache-control", "max-age=60"), ("vary", "*")]);
        assert!(admitted(&cache, &key(), &get(&[]), &star).is_err());
        let res = ok(&[("cache-control", "max-age=60"), ("vary", "x-v")]);
        for i in 0..MAX_VARIANTS + 5 {
            let req = get(&[("x-v", &i.to_string())]);
            let storing = admitted(&cache, &key(), &req, &res).unwrap();
            cache.insert(storing, Bytes::new());
        }
        assert!(
            matches!(
                cache.lookup(&key(), &get(&[("x-v", "0")])),
                Lookup::VaryMiss
            ),
            "the oldest variant was dropped"
        );
        assert!(matches!(
            cache.lookup(&key(), &get(&[("x-v", "36")])),
            Lookup::Fresh(_)
        ));
        assert_eq!(cache.purge(&key()), MAX_VARIANTS);
    }

    /// RFC 9111 §3.3: a 206 is stored as a part of its URL's object, with
    /// one range of a known length; never under the URL's own key. RFC 9110
    /// §15.3.7.1: its Content-Range describes what it encloses, so a body
    /// of another length is not stored. A URL purge reaches the part.
    #[test]
    fn a_partial_response_is_stored_only_as_a_part() {
        let (cache, _) = setup();
        let mut res = ok(&[
            ("cache-control", "max-age=60"),
            ("content-range", "bytes 4-9/10"),
        ]);
        res.status = StatusCode::PARTIAL_CONTENT;
        assert!(admitted(&cache, &key(), &get(&[]), &res).is_err());
        let part = key().part("range");
        assert_eq!(part.primary(), key().hash());
        assert!(part.is_part() && !key().is_part());
        let short = cache.admit(
            &fetched(&cache, &part, &get(&[]), &res),
            StoreRules::default(),
            &KeyFields::default(),
            Some(5),
            u64::MAX,
        );
        assert!(short.is_err(), "a body shorter than its range");
        let storing = cache
            .admit(
                &fetched(&cache, &part, &get(&[]), &res),
                StoreRules::default(),
                &KeyFields::default(),
                Some(6),
                u64::MAX,
            )
            .unwrap();
        let entry = cache.insert(storing, Bytes::from_static(b"456789"));
        assert_eq!(entry.status(), StatusCode::PARTIAL_CONTENT);
        assert!(matches!(cache.lookup(&part, &get(&[])), Lookup::Fresh(_)));
        assert!(cache.may_hold_parts(&key()));
        let other = CacheKey::from_url("http://example.com/y", &outpost_config::QueryKey::All);
        assert!(!cache.may_hold_parts(&other.unwrap()));
        let mut unknown = res.clone();
        unknown.headers.insert(
            http::header::CONTENT_RANGE,
            http::HeaderValue::from_static("bytes 4-9/*"),
        );
        assert!(admitted(&cache, &part, &get(&[]), &unknown).is_err());
        cache.purge(&key());
        assert!(matches!(cache.lookup(&part, &get(&[])), Lookup::Miss));
    }

    /// RFC 9111 §3: a final status with explicit freshness may be stored,
    /// whatever its code; without it, only heuristically cacheable codes.
    #[test]
    fn which_status_codes_are_stored() {
        let (cache, _) = setup();
        let stored = |status: u16, cc: &str| {
            let mut res = ok(&[("cache-control", cc)]);
            res.status = StatusCode::from_u16(status).unwrap();
            admitted(&cache, &key(), &get(&[]), &res).is_ok()
        };
        assert!(stored(500, "max-age=60"));
        assert!(stored(302, "max-age=60"));
        // RFC 9111 §3: `public` makes any final status storable (and
        // §4.2.2 lets it have a heuristic lifetime).
        assert!(stored(500, "public"));
        assert!(stored(599, "public"));
        assert!(
            !stored(599, "must-revalidate"),
            "nothing that allows storing"
        );
        assert!(
            !stored(206, "max-age=60"),
            "partial content is not stored whole"
        );
        assert!(
            !stored(418, "max-age=60, must-understand"),
            "must-understand and an unknown code"
        );
        assert!(!stored(200, "no-store"));
        // RFC 9111 §5.2.2.3: must-understand overrides no-store for a code
        // this cache understands, and only then.
        assert!(stored(200, "max-age=60, no-store, must-understand"));
        assert!(stored(302, "max-age=60, no-store, must-understand"));
        assert!(!stored(418, "max-age=60, no-store, must-understand"));
        assert!(!stored(206, "max-age=60, no-store, must-understand"));
    }

    /// RFC 9111 §1.2.2: an Age past 2^31 is taken as 2^31, never an overflow.
    #[test]
    fn a_huge_age_is_capped_not_a_panic() {
        let (cache, clock) = setup();
        let res = ok(&[
            ("cache-control", "max-age=60"),
            ("age", "18446744073709551615"),
        ]);
        let storing = admitted(&cache, &key(), &get(&[]), &res).unwrap();
        let entry = cache.insert(storing, Bytes::new());
        assert_eq!(entry.headers().get("age").unwrap(), "2147483648");
        clock.advance(Duration::from_secs(1));
        assert!(matches!(cache.lookup(&key(), &get(&[])), Lookup::Stale(_)));
        assert!(entry.age(cache.now()) >= Duration::from_secs(1 << 31));
    }

    /// RFC 9111 §3.5: a rule's TTL does not make an authenticated response shareable.
    #[test]
    fn a_rule_ttl_never_shares_an_authenticated_response() {
        let (cache, _) = setup();
        let rules = StoreRules {
            ttl: Some(Duration::from_secs(300)),
            ..StoreRules::default()
        };
        let auth = get(&[("authorization", "Bearer alice")]);
        let key = key();
        let admit = |res: &response::Parts| {
            let fetched = fetched(&cache, &key, &auth, res);
            cache.admit(&fetched, rules, &KeyFields::default(), None, u64::MAX)
        };
        assert!(admit(&ok(&[])).is_err());
        assert!(admit(&ok(&[("cache-control", "public")])).is_ok());
    }

    /// A body whose declared length is over the limit is refused before a
    /// byte of it is read; the policy is judged first, so a response that
    /// may not be stored says why. One of unknown length is admitted, and
    /// stops being stored once it grows past the limit.
    #[test]
    fn a_declared_length_over_the_limit_is_too_large() {
        let (cache, _) = setup();
        let res = ok(&[("cache-control", "max-age=60")]);
        let (key, req) = (key(), get(&[]));
        let admit = |res: &response::Parts, length: Option<u64>| {
            let fetched = fetched(&cache, &key, &req, res);
            cache.admit(
                &fetched,
                StoreRules::default(),
                &KeyFields::default(),
                length,
                10,
            )
        };
        assert_eq!(admit(&res, Some(11)).err(), Some(NotStored::TooLarge));
        assert!(admit(&res, Some(10)).is_ok());
        assert_eq!(
            admit(&ok(&[("cache-control", "no-store")]), Some(11)).err(),
            Some(NotStored::Headers)
        );
        let mut storing = admit(&res, None).expect("admitted");
        assert!(storing.push(b"0123456789"));
        assert!(!storing.push(b"x"), "past the limit");
        assert!(cache.finish(storing).is_none());
        assert!(matches!(cache.lookup(&key, &req), Lookup::Miss));
    }

    /// RFC 9111 §4.1: the request fields a rule keys on make variants as
    /// Vary does: one call stores the response as the variant of the
    /// request it answers.
    #[test]
    fn key_fields_make_variants_as_vary_does() {
        let (cache, _) = setup();
        let fields = KeyFields {
            headers: vec![http::HeaderName::from_static("x-device")],
            cookies: vec!["lang".to_owned()],
        };
        let res = ok(&[("cache-control", "max-age=60"), ("vary", "accept-encoding")]);
        for (device, lang) in [("phone", "en"), ("desktop", "en"), ("phone", "fr")] {
            let cookie = format!("lang={lang}");
            let req = get(&[("x-device", device), ("cookie", &cookie)]);
            let key = key();
            let fetched = fetched(&cache, &key, &req, &res);
            let storing = cache
                .admit(&fetched, StoreRules::default(), &fields, Some(2), 2)
                .expect("admitted");
            cache.insert(storing, Bytes::from(lang));
        }
        let lookup = |device: &str, cookie: &str| match cache
            .lookup(&key(), &get(&[("x-device", device), ("cookie", cookie)]))
        {
            Lookup::Fresh(entry) => entry.resident_body().cloned(),
            _ => None,
        };
        assert_eq!(lookup("phone", "lang=fr; a=1"), Some(Bytes::from("fr")));
        assert_eq!(lookup("desktop", "lang=en"), Some(Bytes::from("en")));
        assert_eq!(lookup("desktop", "lang=fr"), None);
        assert_eq!(cache.purge(&key()), 3);
    }

    #[test]
    fn the_stored_request_keeps_no_credentials() {
        let (cache, _) = setup();
        let req = get(&[
            ("cookie", "session=secret"),
            ("accept-language", "en"),
            ("authorization", "Bearer t"),
        ]);
        let res = ok(&[
            ("cache-control", "public, max-age=60"),
            ("vary", "Accept-Language"),
        ]);
        let storing = admitted(&cache, &key(), &req, &res).unwrap();
        let entry = cache.insert(storing, Bytes::new());
        let debug = format!("{entry:?}");
        assert!(
            !debug.contains("secret") && !debug.contains("Bearer t"),
            "{debug}"
        );
        assert!(matches!(
            cache.lookup(
                &key(),
                &get(&[("accept-language", "en"), ("authorization", "Bearer u")])
            ),
            Lookup::Fresh(_)
        ));
    }
}
