//! HTTP/1.1 to origins, through hyper's pooled client; interim responses
//! come through hyper's own hook, set by the caller.

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;

use crate::origin::body::UpstreamBody;
use crate::origin::error::Failure;
use crate::origin::resolve::Connector;

/// A request over hyper's HTTP/1.1 client, with interim responses passed on
/// by hyper's own hook (set by the caller).
pub(crate) async fn http1(
    client: &Client<Connector, UpstreamBody>,
    req: Request<UpstreamBody>,
) -> Result<Response<Incoming>, Failure> {
    match client.request(req).await {
        Ok(response) => Ok(response),
        Err(e) if e.is_connect() => Err(Failure::connect(e)),
        Err(e) => Err(Failure::failed(e)),
    }
}
