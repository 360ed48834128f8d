//! `POST /reload`: the config read again, through the hook the edge gives.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use crate::{Admin, Scope, error, json_response, unauthorized};

impl Admin {
    /// `POST /reload`: only a full token may reload. The body, if any, is
    /// ignored: the edge re-reads the file it was started with.
    pub(crate) async fn reload<B>(
        &self,
        req: &Request<B>,
        request_id: &str,
    ) -> Response<Full<Bytes>> {
        match self.caller(req).map(|caller| caller.scope) {
            None => return unauthorized(request_id),
            Some(Scope::Hosts(_)) => {
                return error(
                    StatusCode::FORBIDDEN,
                    "a token scoped to hosts may not reload the config",
                    request_id,
                );
            }
            Some(Scope::All) => {}
        }
        let Some(reload) = &self.reload else {
            return error(
                StatusCode::NOT_IMPLEMENTED,
                "this process cannot reload its config",
                request_id,
            );
        };
        match reload().await {
            Ok(summary) => {
                tracing::info!(request_id, "config reloaded through the side API");
                json_response(
                    StatusCode::OK,
                    json!({"status": "reloaded", "config": summary, "request_id": request_id}),
                )
            }
            Err(errors) => json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({
                    "error": "the new config was refused; the old one keeps serving",
                    "errors": errors,
                    "request_id": request_id,
                }),
            ),
        }
    }
}

/// Re-reads the config file and switches to it, or refuses it and keeps
/// the one serving. Ok carries a JSON summary of the new config; Err the
/// reasons it was refused (`FILE:LINE:COL: key: message` lines).
pub type ReloadHook = dyn Fn() -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<serde_json::Value, Vec<String>>> + Send>,
    > + Send
    + Sync;
