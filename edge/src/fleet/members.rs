//! Who is in the fleet and who applied what. Each node puts a heartbeat
//! under its name in the members KV bucket (entries expire after three
//! heartbeats), and `ID.NODE` in the applied bucket for each purge it has
//! applied. `GET /cluster` and `GET /purge/{id}` read them back.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{self, DiscardPolicy, LastRawMessageErrorKind, StorageType};
use futures_util::StreamExt;
use outpost_purge_api::FleetError;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Fleet;
use super::event::{PurgeEvent, unix_ms};
use crate::origin::error::Chain;

/// A member's heartbeat, as stored in the members bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Member {
    pub(crate) node: String,
    pub(crate) version: String,
    /// Where members reach its proxy.
    pub(crate) peer_addr: Option<String>,
    pub(crate) started_ms: u64,
    pub(crate) heartbeat_ms: u64,
    /// The last stream sequence it has applied.
    pub(crate) applied_seq: u64,
    pub(crate) purge_lag_seconds: f64,
}

/// A heartbeat missed this many times over and the member is gone.
const MISSED_HEARTBEATS: u32 = 3;

impl Fleet {
    fn member_ttl(&self) -> Duration {
        self.settings.heartbeat.get() * MISSED_HEARTBEATS
    }

    async fn bucket(
        &self,
        cell: &tokio::sync::OnceCell<kv::Store>,
        bucket: &str,
        max_age: Duration,
    ) -> Result<kv::Store, FleetError> {
        let store = cell
            .get_or_try_init(|| async {
                // The bucket's stream is made here as a KV bucket's is
                // (`Context::create_key_value` first asks for the account's
                // limits, which servers before 2.10 answer in a form the
                // client does not read).
                let config = stream::Config {
                    name: format!("KV_{bucket}"),
                    subjects: vec![format!("$KV.{bucket}.>")],
                    max_messages_per_subject: 1,
                    max_age,
                    storage: StorageType::File,
                    allow_rollup: true,
                    deny_delete: true,
                    allow_direct: true,
                    discard: DiscardPolicy::New,
                    ..Default::default()
                };
                self.js.get_or_create_stream(config).await?;
                Ok::<_, FleetError>(self.js.get_key_value(bucket).await?)
            })
            .await?;
        Ok(store.clone())
    }

    async fn members_kv(&self) -> Result<kv::Store, FleetError> {
        let ttl = self.member_ttl();
        self.bucket(&self.members_kv, &self.settings.members_bucket, ttl)
            .await
    }

    async fn applied_kv(&self) -> Result<kv::Store, FleetError> {
        let retention = self.settings.retention.get();
        self.bucket(&self.applied_kv, &self.settings.applied_bucket, retention)
            .await
    }

    /// Every second: asks the stream whether anything is pending for this
    /// node (nothing pending is being caught up); every heartbeat: tells
    /// the fleet this node is here.
    pub(super) async fn heartbeat(self: Arc<Self>) {
        let every = self.settings.heartbeat.get();
        let check = every.min(Duration::from_secs(1));
        let mut last_beat: Option<std::time::Instant> = None;
        loop {
            if self.session_ready.load(Ordering::Acquire) {
                match self.nothing_pending().await {
                    Ok(true) => self.caught_up(),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::debug!(error = %Chain(&*e), "asking the stream what is pending")
                    }
                }
            }
            if last_beat.is_none_or(|at| at.elapsed() >= every) {
                last_beat = Some(std::time::Instant::now());
                if let Err(e) = self.beat().await {
                    tracing::debug!(error = %Chain(&*e), "heartbeat");
                }
            }
            tokio::time::sleep(check).await;
        }
    }

    async fn nothing_pending(&self) -> Result<bool, FleetError> {
        let stream = self.js.get_stream_no_info(&self.settings.stream).await?;
        let info = stream.consumer_info(&self.node).await?;
        // Checked again after the request: a session that ended meanwhile
        // may have left purges unapplied.
        Ok(info.num_pending == 0
            && info.num_ack_pending == 0
            && self.session_ready.load(Ordering::Acquire))
    }

    async fn beat(&self) -> Result<(), FleetError> {
        let (lag, _) = self.lag();
        let member = Member {
            node: self.node.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            peer_addr: self.settings.peer_addr.map(|a| a.to_string()),
            started_ms: self.started_ms,
            heartbeat_ms: unix_ms(),
            applied_seq: self.journal().last_seq(),
            purge_lag_seconds: (lag.as_secs_f64() * 1000.0).round() / 1000.0,
        };
        let kv = self.members_kv().await?;
        kv.put(&self.node, serde_json::to_vec(&member)?.into())
            .await?;
        let members = self.member_list().await?;
        if let Some(shield) = &self.shield {
            shield.update(&members).await;
        }
        self.metrics
            .members
            .set(i64::try_from(members.len()).unwrap_or(i64::MAX));
        Ok(())
    }

    /// The members heard from within their time to live, by name.
    ///
    /// The names come from the subjects of the bucket's stream (paged
    /// stream-info requests, each bounded like every JetStream request),
    /// not from `kv::Store::keys`: that one reads through an ordered
    /// consumer, which can wait for ever when a heartbeat is written while
    /// it starts (it then expects one entry more than ever comes, and the
    /// heartbeats that keep coming hold off the idle heartbeat that would
    /// end the wait), and `GET /cluster` and `GET /purge/{id}` with it.
    pub(crate) async fn member_list(&self) -> Result<Vec<Member>, FleetError> {
        let kv = self.members_kv().await?;
        let mut subjects = kv
            .stream
            .info_with_subjects(format!("{}>", kv.prefix))
            .await?;
        let mut keys = Vec::new();
        while let Some(subject) = subjects.next().await {
            let (subject, _) = subject?;
            if let Some(key) = subject.strip_prefix(&kv.prefix) {
                keys.push(key.to_owned());
            }
        }
        let mut members = Vec::new();
        let now = unix_ms();
        let ttl = u64::try_from(self.member_ttl().as_millis()).unwrap_or(u64::MAX);
        for key in keys {
            let Some(value) = kv.get(&key).await? else {
                continue;
            };
            match serde_json::from_slice::<Member>(&value) {
                Ok(member) if now.saturating_sub(member.heartbeat_ms) <= ttl => {
                    members.push(member)
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(key, error = %e, "not a member's heartbeat"),
            }
        }
        members.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(members)
    }

    /// `GET /cluster`.
    pub(super) async fn cluster(&self) -> Result<serde_json::Value, FleetError> {
        let members = self.member_list().await?;
        let now = unix_ms();
        let members: Vec<_> = members
            .into_iter()
            .map(|m| {
                json!({
                    "node": m.node,
                    "version": m.version,
                    "peer_addr": m.peer_addr,
                    "started_ms": m.started_ms,
                    "last_heartbeat_ms": m.heartbeat_ms,
                    "last_heartbeat_age_ms": now.saturating_sub(m.heartbeat_ms),
                    "applied_seq": m.applied_seq,
                    "purge_lag_seconds": m.purge_lag_seconds,
                })
            })
            .collect();
        Ok(json!({
            "node": self.node,
            "fleet": self.settings.fleet,
            "stream": self.settings.stream,
            "members": members,
        }))
    }

    /// Records the batches of applied purges as they come, in order.
    pub(super) async fn record(
        self: Arc<Self>,
        mut batches: tokio::sync::mpsc::Receiver<super::AppliedBatch>,
    ) {
        while let Some(batch) = batches.recv().await {
            self.record_applied(&batch).await;
        }
    }

    /// Notes in the applied bucket that this node applied these purges
    /// (id, Unix milliseconds); a failure costs only the record.
    pub(super) async fn record_applied(&self, applied: &[(String, u64)]) {
        if applied.is_empty() {
            return;
        }
        let kv = match self.applied_kv().await {
            Ok(kv) => kv,
            Err(e) => {
                tracing::warn!(error = %Chain(&*e), "recording applied purges");
                return;
            }
        };
        let puts = applied.iter().map(|(id, at_ms)| {
            let value = json!({ "at_ms": at_ms }).to_string();
            kv.put(format!("{id}.{}", self.node), value.into())
        });
        for result in futures_util::future::join_all(puts).await {
            if let Err(e) = result {
                tracing::warn!(error = %e, "recording an applied purge");
            }
        }
    }

    /// `GET /purge/{id}`: the purge, and which members applied it and when.
    pub(super) async fn purge_status(
        &self,
        id: &str,
    ) -> Result<Option<serde_json::Value>, FleetError> {
        let stream = self.js.get_stream_no_info(&self.settings.stream).await?;
        let message = match stream
            .get_last_raw_message_by_subject(&self.subject_of(id))
            .await
        {
            Ok(message) => message,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                let journal = self.journal();
                return Ok(journal.queued(id).map(|event| {
                    json!({
                        "id": event.id,
                        "origin": event.node,
                        "accepted_ms": event.at_ms,
                        "purge": event.purge,
                        "sequence": null,
                        "queued": true,
                        "members": [],
                        "applied_everywhere": false,
                    })
                }));
            }
            Err(e) => return Err(e.into()),
        };
        let event: PurgeEvent = serde_json::from_slice(&message.payload)?;
        let mut nodes: Vec<String> = self
            .member_list()
            .await?
            .into_iter()
            .map(|m| m.node)
            .collect();
        if !nodes.contains(&event.node) {
            nodes.push(event.node.clone());
        }
        nodes.sort();
        let kv = self.applied_kv().await?;
        let mut members = Vec::with_capacity(nodes.len());
        let mut everywhere = true;
        for node in nodes {
            let at_ms = match kv.get(format!("{id}.{node}")).await? {
                Some(value) => serde_json::from_slice::<serde_json::Value>(&value)
                    .ok()
                    .and_then(|v| v["at_ms"].as_u64()),
                None => None,
            };
            everywhere &= at_ms.is_some();
            members.push(json!({
                "node": node,
                "applied": at_ms.is_some(),
                "applied_ms": at_ms,
            }));
        }
        Ok(Some(json!({
            "id": event.id,
            "origin": event.node,
            "accepted_ms": event.at_ms,
            "purge": event.purge,
            "sequence": message.sequence,
            "queued": false,
            "members": members,
            "applied_everywhere": everywhere,
        })))
    }
}
