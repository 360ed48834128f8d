//! End-to-end: gRPC through Outpost over HTTP/2 both ways, with a real
//! client and server (tonic and its standard health service).

use std::time::Duration;

use outpost_tests::{Outpost, stats};
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as Wire;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::server::HealthReporter;

/// A gRPC origin serving grpc.health.v1 with one service, `orders`.
async fn grpc_origin() -> (String, HealthReporter) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("orders", ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    (format!("http://{addr}"), reporter)
}

async fn through_outpost() -> (
    Outpost,
    HealthClient<tonic::transport::Channel>,
    HealthReporter,
) {
    let (origin, reporter) = grpc_origin().await;
    let config = format!(
        "listen: [{{addr: 127.0.0.1:0}}]\nadmin: {{addr: 127.0.0.1:0}}\norigins:\n  app: {{servers: [{{url: {origin}}}], protocol: http2}}\nsites:\n  - hosts: [\"*\"]\n    origin: app\n"
    );
    let outpost = Outpost::start(&config, &[], None).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", outpost.addr()))
        .expect("endpoint")
        .connect()
        .await
        .expect("a gRPC channel to Outpost");
    let client = HealthClient::new(channel);
    (outpost, client, reporter)
}

fn ask(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.into(),
    }
}

/// A unary call's answer and its trailers (grpc-status) pass intact, and
/// an error status with its message too; nothing is cached.
#[tokio::test]
async fn unary_calls_and_their_status_pass_intact() {
    let (outpost, mut client, _reporter) = through_outpost().await;
    for _ in 0..3 {
        let answer = client.check(ask("orders")).await.expect("SERVING");
        assert_eq!(answer.into_inner().status(), Wire::Serving);
    }
    let error = client.check(ask("payments")).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::NotFound);
    assert!(!error.message().is_empty(), "grpc-message arrives");

    let stats = stats(outpost.admin).await;
    assert_eq!(
        stats["cache"]["memory"]["objects"], 0,
        "gRPC is never stored"
    );
    assert_eq!(stats["requests"]["hit"], 0);
}

/// A server-streaming call streams: each message arrives when the origin
/// sends it, not when the call ends.
#[tokio::test]
async fn a_streaming_call_streams() {
    let (_outpost, mut client, reporter) = through_outpost().await;
    let mut updates = client
        .watch(ask("orders"))
        .await
        .expect("watch")
        .into_inner();
    assert_eq!(next(&mut updates).await, Some(Wire::Serving));
    reporter
        .set_service_status("orders", ServingStatus::NotServing)
        .await;
    assert_eq!(next(&mut updates).await, Some(Wire::NotServing));
    reporter
        .set_service_status("orders", ServingStatus::Serving)
        .await;
    assert_eq!(next(&mut updates).await, Some(Wire::Serving));
}

/// The next message of a watch (bounded wait).
async fn next(
    updates: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
) -> Option<Wire> {
    tokio::time::timeout(Duration::from_secs(10), updates.message())
        .await
        .expect("an update in time")
        .expect("a message")
        .map(|m| m.status())
}
