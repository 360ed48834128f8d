//! The fleet as the side API sees it: a purge accepted here is announced
//! to the other members, `GET /purge/{id}` tells who has applied one, and
//! `GET /cluster` lists the members. The edge implements [`Fleet`] on NATS
//! JetStream; without a `cluster:` section there is none.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::purge::PurgeRequest;
use crate::{Admin, chain, error, json_response};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
pub type FleetError = Box<dyn std::error::Error + Send + Sync>;

/// A purge on its way to the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    pub id: String,
    /// Its place in the stream; None while it waits in this node's queue
    /// for the stream to be reachable.
    pub sequence: Option<u64>,
}

pub trait Fleet: Send + Sync {
    /// A purge this node has just applied: kept durably, then published.
    fn announce<'a>(
        &'a self,
        purge: &'a PurgeRequest,
    ) -> BoxFuture<'a, Result<Announced, FleetError>>;
    /// Which members applied purge `id`, and when; None for an unknown id.
    fn purge_status<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<serde_json::Value>, FleetError>>;
    /// The members, their heartbeats and purge lag.
    fn members(&self) -> BoxFuture<'_, Result<serde_json::Value, FleetError>>;
    /// What the node still waits for before its cache may answer (the
    /// purges it missed); None once caught up.
    fn waiting_for(&self) -> Option<String>;
}

impl Admin {
    pub(crate) async fn purge_status(&self, id: &str, request_id: &str) -> Response<Full<Bytes>> {
        let valid = !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return error(StatusCode::BAD_REQUEST, "not a purge id", request_id);
        }
        let Some(fleet) = &self.fleet else {
            return error(
                StatusCode::NOT_FOUND,
                "this node is not in a fleet: its purges apply here only and have no id",
                request_id,
            );
        };
        match fleet.purge_status(id).await {
            Ok(Some(status)) => json_response(StatusCode::OK, status),
            Ok(None) => error(StatusCode::NOT_FOUND, "no such purge", request_id),
            Err(e) => unreachable_fleet(&*e, request_id),
        }
    }

    pub(crate) async fn cluster(&self, request_id: &str) -> Response<Full<Bytes>> {
        let Some(fleet) = &self.fleet else {
            // A node on its own: a fleet of none, said plainly.
            return json_response(
                StatusCode::OK,
                serde_json::json!({"node": null, "fleet": null, "members": []}),
            );
        };
        match fleet.members().await {
            Ok(members) => json_response(StatusCode::OK, members),
            Err(e) => unreachable_fleet(&*e, request_id),
        }
    }
}

fn unreachable_fleet(
    e: &(dyn std::error::Error + 'static),
    request_id: &str,
) -> Response<Full<Bytes>> {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("the fleet's NATS servers: {}", chain(e)),
        request_id,
    )
}
