//! Header maps made from stored entries lately answered, kept per thread.
//!
//! Every hit turns its entry's compact fields into the `HeaderMap` the
//! response goes out with: each value checked again, each name hashed
//! into a new table, about a tenth of a hit's instructions. The hottest
//! objects are answered over and over from the same entry, so each thread
//! keeps the maps of entries it answered twice in a row of their slot, and
//! a later hit on one of them clones its map instead. An entry answered
//! once costs its slot only a note of the entry, not a map.
//!
//! A slot names its entry by a `Weak`: it keeps no evicted or purged
//! body alive, and while it exists no other entry can be allocated at the
//! address it points to, so an address match is this entry and no other.
//! An entry never changes once stored (it is replaced instead), so neither
//! can its map. A kept map shares its values with the entry, so an entry
//! gone from the cache holds its fields' bytes until its slot is taken.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use http::HeaderMap;

use super::Entry;

/// Slots per thread, a power of two. A map of ten fields is about a
/// kilobyte, so a worker thread keeps some 256 KiB of them for a typical
/// object.
const SLOTS: usize = 256;
const _: () = assert!(SLOTS.is_power_of_two());

thread_local! {
    static MADE: RefCell<Box<[Option<Made>]>> =
        RefCell::new((0..SLOTS).map(|_| None).collect());
}

struct Made {
    from: Weak<Entry>,
    /// Made at the entry's second answer in a row of this slot.
    map: Option<HeaderMap>,
}

impl Entry {
    /// The entry's fields as a header map with room for `extra` more, as
    /// [`super::StoredHeaders::to_map`] makes it, from this thread's recent
    /// maps when the entry is among them.
    pub fn header_map(this: &Arc<Entry>, extra: usize) -> HeaderMap {
        let at = slot(Arc::as_ptr(this));
        let made = MADE.try_with(|made| {
            let mut made = made.try_borrow_mut().ok()?;
            let slot = made.get_mut(at)?;
            match slot {
                Some(kept) if std::ptr::eq(kept.from.as_ptr(), Arc::as_ptr(this)) => {
                    let map = kept.map.get_or_insert_with(|| this.headers.to_map(extra));
                    Some(map.clone())
                }
                _ => {
                    *slot = Some(Made {
                        from: Arc::downgrade(this),
                        map: None,
                    });
                    None
                }
            }
        });
        match made {
            Ok(Some(map)) => map,
            _ => this.headers.to_map(extra),
        }
    }
}

/// The slot for an entry at `address`: its bits above the allocation's
/// alignment, spread by a multiplicative hash, whose top bits pick one of
/// the `SLOTS`.
fn slot(address: *const Entry) -> usize {
    let bits = (address.addr() as u64) >> 4;
    let spread = bits.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (spread >> (u64::BITS - SLOTS.trailing_zeros())) as usize
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{SLOTS, slot};
    use crate::Entry;
    use crate::testing::{setup, store_now};

    fn fields(map: &http::HeaderMap) -> Vec<(String, Vec<u8>, bool)> {
        map.iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec(), v.is_sensitive()))
            .collect()
    }

    /// The first, second and later answers of an entry carry the same
    /// fields, in order, as the stored fields made into a map.
    #[test]
    fn kept_maps_are_the_entrys_own_fields() {
        let (cache, _) = setup();
        let entry = store_now(
            &cache,
            &[
                ("cache-control", "max-age=60"),
                ("link", "</a.css>; rel=preload"),
                ("x-one", "1"),
                ("link", "</b.js>; rel=preload"),
            ],
        )
        .unwrap();
        let made = fields(&entry.headers().to_map(0));
        for _ in 0..4 {
            assert_eq!(fields(&Entry::header_map(&entry, 8)), made);
        }
    }

    /// Entries that share a slot, and an entry stored where a dropped one
    /// lived, are each answered with their own fields, never another's.
    #[test]
    fn an_entry_never_gets_another_entrys_map() {
        let (cache, _) = setup();
        let mut kept = Vec::new();
        for round in 0..3 {
            for i in 0..(SLOTS * 2) {
                let value = format!("{round}-{i}");
                let entry = store_now(&cache, &[("cache-control", "max-age=60"), ("x-id", &value)])
                    .unwrap();
                for _ in 0..2 {
                    let map = Entry::header_map(&entry, 0);
                    assert_eq!(map["x-id"], value.as_str());
                }
                // Every other entry stays; the rest are dropped at once, so
                // their memory is free for the next ones.
                if i % 2 == 0 {
                    kept.push((value, entry));
                }
            }
        }
        // More entries alive at once than there are slots: some slot is
        // shared (by counting; one entry's slot need not be).
        assert!(kept.len() > SLOTS);
        let mut per_slot = vec![0usize; SLOTS];
        for (_, entry) in &kept {
            per_slot[slot(Arc::as_ptr(entry))] += 1;
        }
        assert!(
            per_slot.iter().any(|&n| n > 1),
            "the test must put entries in one slot"
        );
        for (value, entry) in &kept {
            assert_eq!(Entry::header_map(entry, 0)["x-id"], value.as_str());
            assert_eq!(Entry::header_map(entry, 0)["x-id"], value.as_str());
        }
    }
}
