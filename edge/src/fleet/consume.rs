//! This node's durable consumer of the purge stream: on every (re)connect
//! it reconciles its journal with the stream (a new node, a stream made
//! again, or purges dropped by retention mean a purge of everything), then
//! applies each purge in the stream's order, syncs the journal and acks.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::{self, StorageType};
use futures_util::{FutureExt, StreamExt};
use outpost_purge_api::FleetError;

use super::Fleet;
use super::event::{PurgeEvent, unix_ms};
use crate::origin::error::Chain;

/// Purges applied, journaled and acked together at most.
const BATCH: usize = 500;
/// How long the stream dedups a purge published twice (by `Nats-Msg-Id`).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

impl Fleet {
    /// Consumes the stream for as long as the process runs, starting a new
    /// session after each failure.
    pub(super) async fn consume(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if let Err(e) = self.session().await {
                tracing::warn!(error = %Chain(&*e), "the fleet's purge stream; trying again");
            } else {
                backoff = Duration::from_millis(100);
            }
            self.session_ready.store(false, Ordering::Release);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    fn stream_config(&self) -> stream::Config {
        let settings = &self.settings;
        stream::Config {
            name: settings.stream.clone(),
            subjects: vec![format!("{}.*", settings.subject)],
            max_age: settings.retention.get(),
            storage: StorageType::File,
            duplicate_window: DUPLICATE_WINDOW.min(settings.retention.get()),
            allow_direct: true,
            ..Default::default()
        }
    }

    async fn session(&self) -> Result<(), FleetError> {
        let mut stream = self.js.get_or_create_stream(self.stream_config()).await?;
        let info = stream.info().await?.clone();
        let created = info.created.unix_timestamp_nanos().to_string();
        let start_over = self.reconcile(&info.state, &created)?;
        let consumer = self.consumer(&stream, start_over).await?;
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(BATCH)
            // A pull request outlives the process that made it (an upgrade's
            // predecessor, a crash): the server may hand a purge to it until
            // it expires, and send it again only after `ack_wait`. Both short,
            // so such a purge comes back within seconds.
            .expires(Duration::from_secs(3))
            .heartbeat(Duration::from_secs(1))
            .messages()
            .await?;
        self.session_ready.store(true, Ordering::Release);
        tracing::info!(
            last_seq = self.journal().last_seq(),
            stream_last = info.state.last_sequence,
            "reading the fleet's purge stream"
        );
        while let Some(first) = messages.next().await {
            let mut batch = vec![first?];
            while batch.len() < BATCH {
                match messages.next().now_or_never() {
                    Some(Some(message)) => batch.push(message?),
                    _ => break,
                }
            }
            self.handle(batch).await?;
        }
        Ok(())
    }

    /// Squares the journal with the stream before reading it. Returns true
    /// when the consumer must start over at the stream's end.
    fn reconcile(&self, state: &stream::State, created: &str) -> Result<bool, FleetError> {
        let mut journal = self.journal();
        if journal.stream_created().is_none() {
            // Never part of this fleet: what it holds may predate any
            // purge in the stream.
            if !self.purger.cache_is_empty() {
                self.purge_everything("new_node");
            }
            journal.reset(state.last_sequence, created)?;
            return Ok(true);
        }
        if journal.stream_created() != Some(created) || journal.last_seq() > state.last_sequence {
            // The stream was made again: its sequences say nothing of what
            // the old one held.
            self.purge_everything("stream_reset");
            journal.reset(state.last_sequence, created)?;
            return Ok(true);
        }
        if journal.last_seq() + 1 < state.first_sequence {
            // Retention dropped purges this node never applied.
            self.purge_everything("stream_gap");
            journal.reset(state.first_sequence - 1, created)?;
        }
        Ok(false)
    }

    /// This node's durable consumer, made when missing (or again, from the
    /// journal's place, when `start_over`).
    async fn consumer(
        &self,
        stream: &stream::Stream,
        start_over: bool,
    ) -> Result<PullConsumer, FleetError> {
        if start_over {
            // Absent is fine: there is nothing to start over.
            let _ = stream.delete_consumer(&self.node).await;
        } else if let Ok(consumer) = stream.get_consumer::<pull::Config>(&self.node).await {
            return Ok(consumer);
        }
        let start_sequence = self.journal().last_seq() + 1;
        Ok(stream
            .create_consumer(pull::Config {
                durable_name: Some(self.node.clone()),
                description: Some(format!("purges for Outpost node {}", self.node)),
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence },
                ack_policy: AckPolicy::Explicit,
                // Sent again when unacknowledged this long (see `session`);
                // a batch that takes longer is delivered twice, and the
                // journal skips what it already has.
                ack_wait: Duration::from_secs(10),
                max_ack_pending: 20_000,
                filter_subject: format!("{}.*", self.settings.subject),
                ..Default::default()
            })
            .await?)
    }

    /// Applies a batch in order, syncs the journal, then acks: a crash in
    /// between redelivers what the journal already has, which is skipped.
    async fn handle(&self, batch: Vec<async_nats::jetstream::Message>) -> Result<(), FleetError> {
        let mut applied = Vec::with_capacity(batch.len());
        let mut pending = 1;
        {
            let mut journal = self.journal();
            for message in &batch {
                let info = message.info()?;
                let seq = info.stream_sequence;
                pending = info.pending;
                if seq <= journal.last_seq() {
                    self.count("duplicate");
                    continue;
                }
                if seq > journal.last_seq() + 1 {
                    // Retention dropped purges while this node lagged.
                    self.purge_everything("stream_gap");
                }
                let id = match serde_json::from_slice::<PurgeEvent>(&message.payload) {
                    Err(e) => {
                        tracing::warn!(seq, error = %e, "a message of the purge stream is not a purge; skipped");
                        self.count("invalid");
                        journal.applied(seq, "-")?;
                        continue;
                    }
                    Ok(event) if journal.is_own(&event.id) => {
                        self.count("own");
                        applied.push((event.id.clone(), event.at_ms));
                        event.id
                    }
                    Ok(event) => {
                        match self.purger.apply(&event.purge) {
                            Ok(done) => {
                                self.count("applied");
                                tracing::debug!(seq, id = %event.id, origin = %event.node, matched = done.matched, "fleet purge applied");
                            }
                            Err(e) => {
                                self.count("invalid");
                                tracing::warn!(seq, id = %event.id, error = %Chain(&e), "a fleet purge does not apply here");
                            }
                        }
                        applied.push((event.id.clone(), unix_ms()));
                        event.id
                    }
                };
                journal.applied(seq, &id)?;
            }
            journal.sync()?;
        }
        for message in &batch {
            message.ack().await?;
        }
        // Recorded by another task, so the next batch need not wait for
        // the bucket; a full queue of records does make it wait.
        if !applied.is_empty() && self.applied_records.send(applied).await.is_err() {
            tracing::warn!("the applied purges' recorder has stopped");
        }
        if pending == 0 {
            self.caught_up();
        }
        Ok(())
    }

    fn count(&self, outcome: &str) {
        self.metrics
            .stream_purges
            .with_label_values(&[outcome])
            .inc();
    }
}
