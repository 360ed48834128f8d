//! Storing a response: [`Cache::prepare`] decides whether it may be
//! stored and builds a [`PendingEntry`]; the body then arrives whole
//! ([`Cache::insert`]) or piece by piece ([`Cache::storing`], [`Storing`],
//! [`Cache::finish`]), and the entry is committed to memory, when it fits,
//! and to disk.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode, request, response};

use crate::Cache;
use crate::disk::{ChunkWriter, Marker};
use crate::entry::{Body, CHUNK, Entry, Parts, StoredHeaders, Variant};
use crate::freshness::{self, Directives, Freshness};
use crate::key::CacheKey;
use crate::memory::Stored;
use crate::policy::{NotStored, StaleUse, StoreRules, storage_policy};
use crate::purge::Verdict;
use crate::vary::{self, KeyFields, VaryMarker};

/// A response that may be stored once its body has arrived whole.
#[derive(Debug, Clone)]
pub struct PendingEntry {
    key: CacheKey,
    status: StatusCode,
    headers: StoredHeaders,
    freshness: Freshness,
    directives: Directives,
    stale: StaleUse,
    rules: StoreRules,
    /// The fields the response varies on (empty when it does not).
    vary: Vec<http::HeaderName>,
    /// Cookies the rule adds to the key.
    cookies: Vec<String>,
    seq: u64,
    tags: Vec<String>,
    variant: String,
}

impl PendingEntry {
    /// The Vary secondary text of this response's request ("" when it does not vary).
    pub fn variant(&self) -> &str {
        &self.variant
    }

    /// Adds the request fields a rule keys on: they make variants as Vary
    /// does. `request` is the request the response answers.
    pub fn with_key_fields(mut self, fields: &KeyFields, request: &HeaderMap) -> Self {
        if fields.is_empty() {
            return self;
        }
        self.vary.extend(fields.headers.iter().cloned());
        self.vary.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        self.vary.dedup();
        self.cookies = fields.cookies.clone();
        self.variant = vary::secondary(&self.vary, &self.cookies, request);
        self
    }
}

/// A response being stored as its body arrives.
pub struct Storing {
    pending: PendingEntry,
    /// The body so far, while it fits the memory tier.
    copy: Option<BytesMut>,
    /// The body's chunks on their way to disk.
    chunks: Option<ChunkWriter>,
    len: u64,
    limit: u64,
    memory_limit: usize,
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
}

impl Cache {
    /// Builds an entry for a complete response, or says why it must not be
    /// stored. `request_time` is when the request went to the origin and
    /// `response_time` when its answer arrived (RFC 9111 §4.2.3).
    pub fn prepare(
        &self,
        key: &CacheKey,
        req: &request::Parts,
        res: &response::Parts,
        request_time: SystemTime,
        response_time: SystemTime,
        rules: StoreRules,
    ) -> Result<PendingEntry, NotStored> {
        let mut res = res.clone();
        clamp_age(&mut res.headers);
        // RFC 9111 §4.1: `Vary: *` never matches a later request.
        let names = vary::names(&res.headers).ok_or(NotStored::Headers)?;
        let options = self.options.load();
        let built = storage_policy(req, &res, response_time, &options, rules)?;
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
        let variant = if names.is_empty() {
            String::new()
        } else {
            vary::secondary(&names, &[], &req.headers)
        };
        let tags = self.tags_of(&res.headers);
        Ok(PendingEntry {
            key: key.clone(),
            status: res.status,
            headers: StoredHeaders::from_map(&res.headers),
            freshness,
            directives,
            stale: built.stale,
            rules,
            vary: names,
            cookies: Vec::new(),
            variant,
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

    /// Stores a complete entry: under the URL's key, or as one variant of it.
    pub fn insert(&self, pending: PendingEntry, body: Bytes) -> Arc<Entry> {
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

    /// Begins storing a response whose body is still to arrive: feed it
    /// with [`Storing::push`], then hand it to [`Cache::finish`]. Bodies up
    /// to `limit` bytes are stored: in memory when they fit there, and on
    /// disk, chunk by chunk as they arrive, when there is a disk tier.
    pub fn storing(&self, pending: PendingEntry, expected: Option<u64>, limit: u64) -> Storing {
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
            vary,
            cookies,
            variant,
            seq,
            tags,
        } = pending;
        let entry = Entry::new(Parts {
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
            primary: *key.hash(),
        });
        // A purge that arrived while this response was on its way wins.
        if self.purges.judge(&entry) == Verdict::Gone {
            return Arc::new(entry);
        }
        let (hash, entry) = if vary.is_empty() && cookies.is_empty() {
            (*key.hash(), entry)
        } else {
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
                    if let Some(disk) = self.disk.get() {
                        disk.put_marker(
                            *key.hash(),
                            &Marker {
                                key: marker.key.clone(),
                                id: marker.id,
                                names: marker.names.iter().map(|n| n.to_string()).collect(),
                                cookies: marker.cookies.clone(),
                            },
                        );
                    }
                    marker
                }
            };
            let hash = vary::secondary_hash(key.text(), &variant);
            for dropped in marker.remember(hash) {
                self.memory.remove(&dropped);
            }
            let variant = Variant {
                marker: marker.id,
                text: variant.into_boxed_str(),
            };
            (hash, entry.into_variant(variant))
        };
        let entry = Arc::new(entry);
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

/// The Vary secondary text `request` would have for a response with
/// `response` headers under a rule keying on `fields`; None for `Vary: *`.
pub fn variant_of(response: &HeaderMap, fields: &KeyFields, request: &HeaderMap) -> Option<String> {
    let mut names = vary::names(response)?;
    names.extend(fields.headers.iter().cloned());
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    if names.is_empty() && fields.cookies.is_empty() {
        return Some(String::new());
    }
    Some(vary::secondary(&names, &fields.cookies, request))
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
        assert!(
            cache
                .prepare(
                    &key(),
                    &get(&[]),
                    &star,
                    cache.now(),
                    cache.now(),
                    StoreRules::default()
                )
                .is_err()
        );
        let res = ok(&[("cache-control", "max-age=60"), ("vary", "x-v")]);
        for i in 0..MAX_VARIANTS + 5 {
            let req = get(&[("x-v", &i.to_string())]);
            let pending = cache
                .prepare(
                    &key(),
                    &req,
                    &res,
                    cache.now(),
                    cache.now(),
                    StoreRules::default(),
                )
                .unwrap();
            cache.insert(pending, Bytes::new());
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

    /// RFC 9111 §3: a final status with explicit freshness may be stored,
    /// whatever its code; without it, only heuristically cacheable codes.
    #[test]
    fn which_status_codes_are_stored() {
        let (cache, _) = setup();
        let stored = |status: u16, cc: &str| {
            let mut res = ok(&[("cache-control", cc)]);
            res.status = StatusCode::from_u16(status).unwrap();
            cache
                .prepare(
                    &key(),
                    &get(&[]),
                    &res,
                    cache.now(),
                    cache.now(),
                    StoreRules::default(),
                )
                .is_ok()
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
        let pending = cache
            .prepare(
                &key(),
                &get(&[]),
                &res,
                cache.now(),
                cache.now(),
                StoreRules::default(),
            )
            .unwrap();
        let entry = cache.insert(pending, Bytes::new());
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
        assert!(
            cache
                .prepare(&key(), &auth, &ok(&[]), cache.now(), cache.now(), rules)
                .is_err()
        );
        let public = ok(&[("cache-control", "public")]);
        assert!(
            cache
                .prepare(&key(), &auth, &public, cache.now(), cache.now(), rules)
                .is_ok()
        );
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
        let pending = cache
            .prepare(
                &key(),
                &req,
                &res,
                cache.now(),
                cache.now(),
                StoreRules::default(),
            )
            .unwrap();
        let entry = cache.insert(pending, Bytes::new());
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
