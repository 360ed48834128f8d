//! `docs/openapi.yaml` documents exactly the routes the side API serves.

use std::collections::BTreeSet;

use outpost_purge_api::ROUTES;

#[test]
fn the_openapi_document_matches_the_router() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml"))
            .expect("docs/openapi.yaml");
    let document: serde_json::Value = serde_saphyr::from_str(&text).expect("valid YAML");
    let mut documented = BTreeSet::new();
    for (path, operations) in document["paths"].as_object().expect("paths") {
        for method in operations.as_object().expect("operations").keys() {
            documented.insert((path.clone(), method.to_ascii_uppercase()));
        }
    }
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .flat_map(|(path, methods)| methods.iter().map(|m| (path.to_string(), m.to_string())))
        .collect();
    assert_eq!(documented, served);
}
