//! Flag set-up through the admin API, in [`PROJECT`] and [`ENV`].

use serde_json::json;
use tonic::transport::Channel;
use vexil_proto::model::json_to_value;
use vexil_proto::v1 as pb;
use vexil_proto::v1::admin_service_client::AdminServiceClient;

use crate::{ENV, PROJECT, authed};

/// Creates a bool flag with variations `false`, `true`: off serves `false`, the fallthrough
/// `true`. It starts off in every environment; `client_side` makes it visible to client and
/// mobile keys.
pub async fn create_bool_flag(
    admin: &mut AdminServiceClient<Channel>,
    token: &str,
    key: &str,
    client_side: bool,
) {
    admin
        .create_flag(authed(bool_flag_request(key, client_side), token))
        .await
        .expect("create flag");
}

/// The request [`create_bool_flag`] sends, for callers that handle its failure themselves.
pub fn bool_flag_request(key: &str, client_side: bool) -> pb::CreateFlagRequest {
    pb::CreateFlagRequest {
        project_key: PROJECT.into(),
        key: key.into(),
        name: key.into(),
        kind: pb::FlagKind::Bool as i32,
        variations: vec![json_to_value(&json!(false)), json_to_value(&json!(true))],
        client_side,
        off_variation: Some(0),
        fallthrough: Some(pb::Serve {
            kind: Some(pb::serve::Kind::Variation(1)),
            experiment: None,
        }),
        ..Default::default()
    }
}

/// Creates a bool flag (as [`create_bool_flag`], server-side only) whose fallthrough is a
/// 50/50 rollout in the experiment `experiment`, and turns it on in [`ENV`].
pub async fn create_experiment_flag(
    admin: &mut AdminServiceClient<Channel>,
    token: &str,
    key: &str,
    experiment: &str,
) {
    let mut request = bool_flag_request(key, false);
    request.fallthrough = Some(pb::Serve {
        kind: Some(pb::serve::Kind::Rollout(pb::Rollout {
            variations: halves(),
            bucket_by: None,
            algorithm: pb::BucketingAlgorithm::Murmur3V1 as i32,
        })),
        experiment: Some(pb::ExperimentAllocation {
            key: experiment.into(),
            traffic_allocation: None,
            layer: String::new(),
            layer_offset: 0,
        }),
    });
    admin
        .create_flag(authed(request, token))
        .await
        .expect("create experiment flag");
    toggle(admin, token, key, true).await;
}

/// Variations 0 and 1, half the traffic each: a 50/50 rollout or experiment.
pub fn halves() -> Vec<pb::WeightedVariation> {
    (0..2)
        .map(|variation| pb::WeightedVariation {
            variation,
            weight: 50_000,
        })
        .collect()
}

/// Flag `key` in [`ENV`], as the history calls name it.
pub fn flag_resource(key: &str) -> pb::VersionedResource {
    pb::VersionedResource {
        project_key: PROJECT.into(),
        environment_key: ENV.into(),
        kind: pb::VersionedKind::Flag as i32,
        key: key.into(),
    }
}

/// The version of a flag's configuration in [`ENV`] (the expected version of a write).
pub async fn config_version(
    admin: &mut AdminServiceClient<Channel>,
    token: &str,
    key: &str,
) -> i64 {
    let flag = admin
        .get_flag(authed(
            pb::GetFlagRequest {
                project_key: PROJECT.into(),
                key: key.into(),
                environment_keys: vec![ENV.into()],
            },
            token,
        ))
        .await
        .expect("get flag")
        .into_inner();
    flag.configurations[0].version
}

/// Turns a flag on or off in [`ENV`].
pub async fn toggle(admin: &mut AdminServiceClient<Channel>, token: &str, key: &str, on: bool) {
    try_toggle(admin, token, key, on)
        .await
        .expect("toggle flag");
}

/// [`toggle`], returning the refusal instead of panicking (for load generators that count
/// failed writes).
pub async fn try_toggle(
    admin: &mut AdminServiceClient<Channel>,
    token: &str,
    key: &str,
    on: bool,
) -> Result<(), tonic::Status> {
    let version = config_version(admin, token, key).await;
    admin
        .toggle_flag(authed(
            pb::ToggleFlagRequest {
                project_key: PROJECT.into(),
                environment_key: ENV.into(),
                key: key.into(),
                expected_version: version,
                on,
            },
            token,
        ))
        .await
        .map(|_| ())
}
