//! Regression tests for what `make api-fuzz` (schemathesis, driven by
//! `docs/openapi.yaml`) found: the side API answers as its document says.

use super::*;

/// The document types every purge field as a list or a boolean, never
/// null: an explicit `null` is refused, not read as a field left out
/// (which let `{"everything": null, "hosts": [...]}` purge the hosts).
#[tokio::test]
async fn a_null_purge_field_is_refused() {
    let (admin, cache) = admin(Some("t"));
    store(&cache, "http://example.com/a");
    for body in [
        r#"{"hosts": ["example.com"], "urls": null}"#,
        r#"{"hosts": ["example.com"], "prefixes": null}"#,
        r#"{"hosts": null, "prefixes": ["example.com/"]}"#,
        r#"{"hosts": ["example.com"], "tags": null}"#,
        r#"{"hosts": ["example.com"], "everything": null}"#,
        r#"{"hosts": ["example.com"], "soft": null}"#,
    ] {
        let (status, json) = call(&admin, purge_request(Some("t"), body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {json}");
        assert!(json["error"].is_string(), "{json}");
    }
    assert_eq!(cache.usage().memory_objects, 1, "nothing was purged");
}
