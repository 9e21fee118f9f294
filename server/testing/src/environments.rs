//! Environment set-up through the admin API, in [`PROJECT`].

use tonic::transport::Channel;
use vexil_proto::v1 as pb;
use vexil_proto::v1::admin_service_client::AdminServiceClient;

use crate::{PROJECT, authed};

/// Creates environment `key` (named `key` too) and issues a server SDK key for it; returns
/// the key's secret.
pub async fn create_environment(
    admin: &mut AdminServiceClient<Channel>,
    token: &str,
    key: &str,
) -> String {
    admin
        .create_environment(authed(
            pb::CreateEnvironmentRequest {
                project_key: PROJECT.into(),
                key: key.into(),
                name: key.into(),
                ..Default::default()
            },
            token,
        ))
        .await
        .expect("create the environment");
    admin
        .issue_sdk_key(authed(
            pb::IssueSdkKeyRequest {
                project_key: PROJECT.into(),
                environment_key: key.into(),
                kind: pb::SdkKeyKind::Server as i32,
                name: key.into(),
            },
            token,
        ))
        .await
        .expect("issue a key")
        .into_inner()
        .secret
}
