//! What the disk tier's store holds, as the store itself reports it: how
//! many of its blocks are in use (through the metrics registry it reports
//! to, of which only the block gauges are kept) and how many records its
//! reclaimer dropped to make room (through its reinsertion filter, which
//! sees every record of a block being reclaimed and reinserts none).

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mixtrics::metrics::{
    BoxedCounter, BoxedCounterVec, BoxedGauge, BoxedGaugeVec, BoxedHistogram, BoxedHistogramVec,
    CounterOps, CounterVecOps, GaugeOps, GaugeVecOps, HistogramOps, HistogramVecOps, RegistryOps,
};

/// The store's blocks by state, its block size, and the records evicted.
#[derive(Debug, Default)]
pub struct Occupancy {
    /// Blocks being written, full (evictable) and being reclaimed.
    writing: AtomicU64,
    evictable: AtomicU64,
    reclaiming: AtomicU64,
    block_size: AtomicU64,
    evicted: AtomicU64,
}

impl Occupancy {
    /// Bytes of blocks holding records.
    pub fn bytes(&self) -> u64 {
        let blocks = self.writing.load(Ordering::Relaxed)
            + self.evictable.load(Ordering::Relaxed)
            + self.reclaiming.load(Ordering::Relaxed);
        blocks.saturating_mul(self.block_size.load(Ordering::Relaxed))
    }

    /// Records (heads and chunks) dropped to make room, since the start.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

/// A metrics registry for the store that keeps its block gauges in an
/// [`Occupancy`] and drops every other figure.
#[derive(Debug, Clone)]
pub struct Registry(pub Arc<Occupancy>);

#[derive(Debug)]
struct Ignored;

impl CounterOps for Ignored {
    fn increase(&self, _: u64) {}
}

impl CounterVecOps for Ignored {
    fn counter(&self, _: &[Cow<'static, str>]) -> BoxedCounter {
        Box::new(Ignored)
    }
}

impl GaugeOps for Ignored {
    fn increase(&self, _: u64) {}
    fn decrease(&self, _: u64) {}
    fn absolute(&self, _: u64) {}
}

impl GaugeVecOps for Ignored {
    fn gauge(&self, _: &[Cow<'static, str>]) -> BoxedGauge {
        Box::new(Ignored)
    }
}

impl HistogramOps for Ignored {
    fn record(&self, _: f64) {}
}

impl HistogramVecOps for Ignored {
    fn histogram(&self, _: &[Cow<'static, str>]) -> BoxedHistogram {
        Box::new(Ignored)
    }
}

/// One of the kept gauges.
#[derive(Debug)]
struct Kept {
    occupancy: Arc<Occupancy>,
    which: fn(&Occupancy) -> &AtomicU64,
}

impl GaugeOps for Kept {
    fn increase(&self, val: u64) {
        (self.which)(&self.occupancy).fetch_add(val, Ordering::Relaxed);
    }
    fn decrease(&self, val: u64) {
        let gauge = (self.which)(&self.occupancy);
        let _ = gauge.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(val))
        });
    }
    fn absolute(&self, val: u64) {
        (self.which)(&self.occupancy).store(val, Ordering::Relaxed);
    }
}

/// The block gauges, by their `type` label (or the block size gauge).
#[derive(Debug)]
struct Blocks {
    occupancy: Arc<Occupancy>,
    size: bool,
}

impl GaugeVecOps for Blocks {
    fn gauge(&self, labels: &[Cow<'static, str>]) -> BoxedGauge {
        let which: fn(&Occupancy) -> &AtomicU64 = if self.size {
            |o| &o.block_size
        } else {
            match labels.get(1).map(|l| l.as_ref()) {
                Some("writing") => |o| &o.writing,
                Some("evictable") => |o| &o.evictable,
                Some("reclaiming") => |o| &o.reclaiming,
                _ => return Box::new(Ignored),
            }
        };
        Box::new(Kept {
            occupancy: self.occupancy.clone(),
            which,
        })
    }
}

impl RegistryOps for Registry {
    fn register_counter_vec(
        &self,
        _: Cow<'static, str>,
        _: Cow<'static, str>,
        _: &'static [&'static str],
    ) -> BoxedCounterVec {
        Box::new(Ignored)
    }

    fn register_gauge_vec(
        &self,
        name: Cow<'static, str>,
        _: Cow<'static, str>,
        _: &'static [&'static str],
    ) -> BoxedGaugeVec {
        match name.as_ref() {
            "foyer_storage_block_engine_block" => Box::new(Blocks {
                occupancy: self.0.clone(),
                size: false,
            }),
            "foyer_storage_block_engine_block_size_bytes" => Box::new(Blocks {
                occupancy: self.0.clone(),
                size: true,
            }),
            _ => Box::new(Ignored),
        }
    }

    fn register_histogram_vec(
        &self,
        _: Cow<'static, str>,
        _: Cow<'static, str>,
        _: &'static [&'static str],
    ) -> BoxedHistogramVec {
        Box::new(Ignored)
    }

    fn register_histogram_vec_with_buckets(
        &self,
        _: Cow<'static, str>,
        _: Cow<'static, str>,
        _: &'static [&'static str],
        _: Vec<f64>,
    ) -> BoxedHistogramVec {
        Box::new(Ignored)
    }
}

/// The reclaimer's reinsertion condition: counts each record of a block
/// being reclaimed (and tells the catalog), and reinserts none (as the
/// store does by default).
#[derive(Debug)]
pub struct CountEvictions(pub Arc<Occupancy>, pub Arc<super::catalog::Catalog>);

impl foyer::StorageFilterCondition for CountEvictions {
    fn filter(
        &self,
        _: &Arc<foyer::Statistics>,
        hash: u64,
        _: usize,
    ) -> foyer::StorageFilterResult {
        self.0.evicted.fetch_add(1, Ordering::Relaxed);
        self.1.evicted(hash);
        foyer::StorageFilterResult::Reject
    }
}
