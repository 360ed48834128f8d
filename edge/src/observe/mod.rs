//! What the process says about itself: the access log, metrics, and the
//! last minute the status page shows.

pub(crate) mod access_log;
pub(crate) mod counted;
pub(crate) mod recent;

/// A log layer that counts the errors the disk tier's store reports on its
/// own threads (failed writes: a full or failing disk), for the
/// `outpost_disk_errors_total{kind="io"}` metric. It sees those events only.
pub fn store_error_counter<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer;
    struct Count;
    impl<S: tracing::Subscriber> Layer<S> for Count {
        fn on_event(
            &self,
            _event: &tracing::Event<'_>,
            _ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            outpost_cache::note_store_error();
        }
    }
    Count.with_filter(tracing_subscriber::filter::filter_fn(|meta| {
        *meta.level() == tracing::Level::ERROR && meta.target().starts_with("foyer")
    }))
}
