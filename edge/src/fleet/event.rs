//! A purge as it travels the fleet: one message in the JetStream stream,
//! on the subject `SUBJECT.ID`, so a purge can be found again by its id.

use outpost_purge_api::PurgeRequest;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PurgeEvent {
    /// Unique in the fleet; also the message's `Nats-Msg-Id`, so the
    /// stream drops a second publication of it.
    pub(crate) id: String,
    /// The node whose side API accepted it.
    pub(crate) node: String,
    /// When that node accepted and applied it, in Unix milliseconds.
    pub(crate) at_ms: u64,
    pub(crate) purge: PurgeRequest,
}

impl PurgeEvent {
    pub(crate) fn new(node: &str, purge: PurgeRequest) -> Self {
        Self {
            id: nuid::next().to_string(),
            node: node.to_owned(),
            at_ms: unix_ms(),
            purge,
        }
    }
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_travels_as_json_and_its_id_is_one_subject_token() {
        let event = PurgeEvent::new(
            "edge-a",
            PurgeRequest {
                tags: Some(vec!["t1".into()]),
                soft: true,
                ..PurgeRequest::default()
            },
        );
        assert!(event.id.chars().all(|c| c.is_ascii_alphanumeric()));
        let text = serde_json::to_string(&event).unwrap();
        assert!(!text.contains("urls"), "{text}");
        let back: PurgeEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(back, event);
        assert_ne!(
            PurgeEvent::new("edge-a", PurgeRequest::everything()).id,
            event.id
        );
    }
}
