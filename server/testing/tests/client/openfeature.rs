//! `vexil-openfeature` under OpenFeature's Rust SDK (`open-feature`) against a real server:
//! values, details, reasons, errors, a multi-kind context, the provider's status across a
//! server restart.

use open_feature::provider::{FeatureProvider, ProviderStatus};
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationErrorCode, EvaluationReason,
    FlagMetadataValue, OpenFeature,
};
use vexil_openfeature::VexilProvider;

use super::*;

fn alice() -> EvaluationContext {
    EvaluationContext::default()
        .with_targeting_key("alice")
        .with_custom_field("plan", "free")
}

/// The error code of a failed resolution.
/// The part of a multi-kind context for one kind: one JSON object.
fn of_kind(context: serde_json::Value) -> EvaluationContextFieldValue {
    EvaluationContextFieldValue::Struct(Arc::new(context))
}

fn code<T>(result: Result<T, open_feature::EvaluationError>) -> Option<EvaluationErrorCode> {
    result.err().map(|e| e.code)
}

fn metadata(
    details: &open_feature::EvaluationDetails<bool>,
    name: &str,
) -> Option<FlagMetadataValue> {
    details.flag_metadata.values.get(name).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_serves_through_the_openfeature_sdk() {
    let mut server = start_server().await;
    server.create_bool_flag("checkout", false).await;
    server.toggle("checkout", true).await;
    let imported = server
        .import_ruleset(json!({
        "flags": [
            {"key": "seats", "kind": "number", "variations": [5, 2.5], "on": true,
             "off_variation": 0, "fallthrough": {"variation": 0},
             "rules": [{"id": "big", "clauses": [{"context_kind": "org", "attribute": "plan",
                        "op": "in", "values": ["enterprise"]}], "serve": {"variation": 1}}]},
            {"key": "limits", "kind": "json", "variations": [{"max": 3}, "text"], "on": true,
             "off_variation": 1, "fallthrough": {"variation": 0}}
        ],
        "segments": []
        }))
        .await;

    let config = quick(Config::new(server.sdk_key(ENV, "server")).with_endpoint(server.endpoint()));
    let provider = tokio::task::spawn_blocking(move || VexilProvider::new(config))
        .await
        .unwrap()
        .unwrap();
    let client_handle = provider.client().clone();
    let watched = provider.clone();
    let mut api = OpenFeature::default();
    api.set_provider(provider).await;
    let client = api.create_client();
    // Ready, and holding the environment as the import left it (every flag above).
    eventually_blocking(WAIT, "the provider's client ready with every flag", || {
        client_handle.status() == Status::Ready && client_handle.version() >= imported
    })
    .await;

    let checkout = client
        .get_bool_details("checkout", Some(&alice()), None)
        .await
        .unwrap();
    assert!(checkout.value);
    assert_eq!(checkout.reason, Some(EvaluationReason::Default));
    assert_eq!(checkout.variant.as_deref(), Some("1"));
    assert_eq!(
        metadata(&checkout, "vexilReason"),
        Some(FlagMetadataValue::String("FALLTHROUGH".into()))
    );
    assert_eq!(
        client
            .get_int_value("seats", Some(&alice()), None)
            .await
            .unwrap(),
        5
    );
    let limits = client
        .get_struct_details::<open_feature::StructValue>("limits", Some(&alice()), None)
        .await
        .unwrap();
    assert_eq!(limits.value.fields.len(), 1);

    // A multi-kind context: one JSON object per kind.
    let org = EvaluationContext::default()
        .with_custom_field("kind", "multi")
        .with_custom_field("user", of_kind(json!({"targetingKey": "alice"})))
        .with_custom_field(
            "org",
            of_kind(json!({"targetingKey": "acme", "plan": "enterprise"})),
        );
    let seats = client
        .get_float_details("seats", Some(&org), None)
        .await
        .unwrap();
    assert_eq!(
        (seats.value, seats.reason),
        (2.5, Some(EvaluationReason::TargetingMatch))
    );

    // Errors, as OpenFeature's codes.
    assert_eq!(
        code(client.get_bool_value("nope", Some(&alice()), None).await),
        Some(EvaluationErrorCode::FlagNotFound)
    );
    assert_eq!(
        code(
            client
                .get_string_value("checkout", Some(&alice()), None)
                .await
        ),
        Some(EvaluationErrorCode::TypeMismatch)
    );
    assert_eq!(
        code(client.get_int_value("seats", Some(&org), None).await),
        Some(EvaluationErrorCode::TypeMismatch),
        "2.5 is not an integer"
    );
    let no_key = EvaluationContext::default().with_custom_field("plan", "x");
    assert_eq!(
        code(client.get_bool_value("checkout", Some(&no_key), None).await),
        Some(EvaluationErrorCode::TargetingKeyMissing)
    );
    let bad_kind = alice().with_custom_field("kind", "no spaces!");
    assert_eq!(
        code(
            client
                .get_bool_value("checkout", Some(&bad_kind), None)
                .await
        ),
        Some(EvaluationErrorCode::InvalidContext)
    );

    // The provider's status is the client's: STALE while the server is away, with the last
    // values, and READY again once it is back.
    assert_eq!(watched.status(), ProviderStatus::Ready);
    server.kill().await;
    eventually_blocking(WAIT, "STALE", || watched.status() == ProviderStatus::STALE).await;
    let held = client
        .get_bool_details("checkout", Some(&alice()), None)
        .await
        .unwrap();
    assert_eq!(
        (held.value, held.reason),
        (true, Some(EvaluationReason::Other("STALE".into())))
    );
    server.restart().await;
    eventually_blocking(WAIT, "READY again", || {
        watched.status() == ProviderStatus::Ready
    })
    .await;
    server.stop().await;
}
