//! SyncService: the environment's ruleset streamed to local-evaluation SDKs (server keys
//! only) — a snapshot or a catch-up patch, then a patch per change, heartbeats in between.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use vexil_proto::v1 as pb;
use vexil_proto::v1::sync_service_server::SyncService;

use super::streams::{self, ResponseStream, StreamGuard, StreamHandler};
use crate::convert;
use crate::live::{Environment, Hub, Update};
use crate::sdk_auth::{SdkAuth, require_server_key};
use crate::status::from_storage;

/// The SyncService.
#[derive(Debug, Clone)]
pub struct SyncApi {
    hub: Hub,
    auth: Arc<SdkAuth>,
}

impl SyncApi {
    pub fn new(hub: Hub, auth: Arc<SdkAuth>) -> SyncApi {
        SyncApi { hub, auth }
    }
}

fn snapshot_message(snapshot: &pb::Snapshot) -> pb::SyncResponse {
    pb::SyncResponse {
        event: Some(pb::sync_response::Event::Snapshot(snapshot.clone())),
    }
}

fn patch_message(patch: pb::Patch) -> pb::SyncResponse {
    pb::SyncResponse {
        event: Some(pb::sync_response::Event::Patch(patch)),
    }
}

/// One Sync stream: the version its client holds.
struct Syncer {
    version: i64,
    project: String,
    environment: String,
    hub: Hub,
}

impl Syncer {
    /// What brings a client holding `self.version` to the environment's current state:
    /// nothing when current, a patch from the change log when it reaches back far enough,
    /// else a snapshot.
    async fn catch_up(
        &mut self,
        environment: &Environment,
    ) -> Result<Vec<pb::SyncResponse>, Status> {
        let held = environment.current();
        if self.version == held.version {
            return Ok(Vec::new());
        }
        if self.version > 0 && self.version < held.version {
            let patch = self
                .hub
                .storage()
                .load_patch_at_least(
                    &environment.project,
                    &environment.key,
                    self.version,
                    held.version,
                )
                .await
                .map_err(from_storage)?;
            if let Some(patch) = patch
                && patch.version >= held.version
            {
                self.version = patch.version;
                return Ok(vec![patch_message(convert::patch(
                    &patch,
                    &environment.key,
                ))]);
            }
        }
        self.version = held.version;
        Ok(vec![snapshot_message(&held.snapshot())])
    }
}

impl StreamHandler for Syncer {
    type Message = pb::SyncResponse;

    async fn on_update(&mut self, update: &Update) -> Result<Vec<pb::SyncResponse>, Status> {
        if update.state.version <= self.version {
            return Ok(Vec::new());
        }
        if update.from_version == self.version {
            self.version = update.state.version;
            return Ok(vec![match &update.patch {
                Some(patch) => patch_message(patch.as_ref().clone()),
                None => snapshot_message(&update.state.snapshot()),
            }]);
        }
        // The stream holds another version than the update starts from (it caught up from
        // the store past the memory, or missed an update): patch from the store.
        let patch = self
            .hub
            .storage()
            .load_patch_at_least(
                &self.project,
                &self.environment,
                self.version,
                update.state.version,
            )
            .await
            .map_err(from_storage)?;
        match patch {
            Some(patch) if patch.version >= update.state.version => {
                self.version = patch.version;
                Ok(vec![patch_message(convert::patch(
                    &patch,
                    &self.environment,
                ))])
            }
            _ => {
                self.version = update.state.version;
                Ok(vec![snapshot_message(&update.state.snapshot())])
            }
        }
    }

    async fn on_missed(
        &mut self,
        environment: &Environment,
    ) -> Result<Vec<pb::SyncResponse>, Status> {
        self.catch_up(environment).await
    }

    fn heartbeat(&self) -> pb::SyncResponse {
        pb::SyncResponse {
            event: Some(pb::sync_response::Event::Heartbeat(streams::heartbeat(
                self.version,
            ))),
        }
    }
}

#[tonic::async_trait]
impl SyncService for SyncApi {
    type SyncStream = ResponseStream<pb::SyncResponse>;

    async fn sync(
        &self,
        request: Request<pb::SyncRequest>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        self.hub
            .metrics()
            .observed("Sync", async {
                let key = self.auth.authenticate(request.metadata()).await?;
                require_server_key(&key, "Sync")?;
                let guard = StreamGuard::open(&self.hub, "sync", key.id)?;
                let request = request.into_inner();
                streams::check_resume_version(request.version)?;
                let environment = self
                    .hub
                    .environment(&key.project_key, &key.environment_key)
                    .await
                    .map_err(from_storage)?;
                tracing::debug!(
                    environment = %environment.label,
                    sdk = %request.sdk_name,
                    sdk_version = %request.sdk_version,
                    version = request.version,
                    "sync stream opened"
                );
                let updates = environment.subscribe();
                let mut syncer = Syncer {
                    version: request.version,
                    project: environment.project.clone(),
                    environment: environment.key.clone(),
                    hub: self.hub.clone(),
                };
                let mut first = syncer.catch_up(&environment).await?;
                if first.is_empty() {
                    // Current already: say so at once, so that the client knows it is live.
                    first.push(syncer.heartbeat());
                }
                Ok(Response::new(streams::spawn_stream(
                    &self.hub,
                    environment,
                    updates,
                    first,
                    syncer,
                    guard,
                )))
            })
            .await
    }
}
