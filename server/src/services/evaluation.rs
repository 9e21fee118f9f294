//! EvaluationService: flags evaluated on the server, from the ruleset held in memory, for
//! SDK keys of every kind. Client and mobile keys see only flags marked `client_side`; to
//! them every other flag does not exist (`FLAG_NOT_FOUND`; see [`crate::key_view`]). No
//! rule ever leaves the server.

use std::collections::HashSet;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use vexil_engine::{Ruleset, ValueKind};
use vexil_proto::v1 as pb;
use vexil_proto::v1::evaluation_service_server::EvaluationService;

use super::streams::{self, ResponseStream, StreamGuard, StreamHandler};
use crate::convert;
use crate::key_view::{KeyView, RequestContext};
use crate::live::{Environment, Hub, Loaded, Update};
use crate::sdk_auth::SdkAuth;
use crate::status::from_storage;
use crate::storage::{SdkKey, SdkKeyKind};

/// Most flag keys one request may list.
const MAX_LISTED_FLAGS: usize = 20_000;

/// The EvaluationService.
#[derive(Debug, Clone)]
pub struct EvaluationApi {
    hub: Hub,
    auth: Arc<SdkAuth>,
}

impl EvaluationApi {
    pub fn new(hub: Hub, auth: Arc<SdkAuth>) -> EvaluationApi {
        EvaluationApi { hub, auth }
    }

    async fn environment(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<(SdkKey, Arc<Environment>), Status> {
        let key = self.auth.authenticate(metadata).await?;
        let environment = self
            .hub
            .environment(&key.project_key, &key.environment_key)
            .await
            .map_err(from_storage)?;
        Ok((key, environment))
    }

    fn count(&self, environment: &Environment, rpc: &str, flags: usize) {
        self.hub
            .metrics()
            .count_evaluations(&environment.label, rpc, flags);
    }
}

/// The request's context, which it must carry.
fn read_context(context: Option<&pb::Context>) -> Result<RequestContext, Status> {
    let context = context.ok_or_else(|| Status::invalid_argument("context: required"))?;
    Ok(RequestContext::from_json(convert::context_to_json(context)))
}

/// Results on the wire, as one key may see them.
struct Evaluator<'r> {
    view: KeyView<'r>,
}

impl<'r> Evaluator<'r> {
    fn new(ruleset: &'r Ruleset, key_kind: SdkKeyKind) -> Evaluator<'r> {
        Evaluator {
            view: KeyView::new(ruleset, key_kind),
        }
    }

    fn evaluate(
        &self,
        flag_key: &str,
        context: &RequestContext,
        kind: ValueKind,
        default: Option<&prost_types::Value>,
    ) -> pb::EvaluationResult {
        let evaluation = self.view.evaluate(flag_key, context, kind);
        convert::evaluation_result(flag_key, &evaluation, default)
    }
}

fn requested_kind(kind: i32, default: Option<&prost_types::Value>) -> Result<ValueKind, Status> {
    Ok(match pb::FlagKind::try_from(kind) {
        Ok(pb::FlagKind::Bool) => ValueKind::Bool,
        Ok(pb::FlagKind::String) => ValueKind::String,
        Ok(pb::FlagKind::Number) => ValueKind::Number,
        Ok(pb::FlagKind::Json) => ValueKind::Json,
        Ok(pb::FlagKind::Unspecified) => match default {
            Some(default) => ValueKind::of_default(&convert::value_to_json(default)),
            None => ValueKind::Json,
        },
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "kind: unknown flag kind {kind}"
            )));
        }
    })
}

fn check_flag_keys(keys: &[String]) -> Result<(), Status> {
    if keys.len() > MAX_LISTED_FLAGS {
        return Err(Status::invalid_argument(format!(
            "flag_keys: at most {MAX_LISTED_FLAGS} keys, got {}",
            keys.len()
        )));
    }
    if let Some(i) = keys.iter().position(String::is_empty) {
        return Err(Status::invalid_argument(format!(
            "flag_keys[{i}]: must not be empty"
        )));
    }
    Ok(())
}

/// The results for `listed` keys (each once, in the order given), or for every visible flag.
fn evaluate_many(
    evaluator: &Evaluator<'_>,
    context: &RequestContext,
    listed: &[String],
) -> Vec<pb::EvaluationResult> {
    if listed.is_empty() {
        evaluator
            .view
            .visible_keys()
            .map(|key| evaluator.evaluate(key, context, ValueKind::Json, None))
            .collect()
    } else {
        let mut seen = HashSet::with_capacity(listed.len());
        listed
            .iter()
            .filter(|key| seen.insert(key.as_str()))
            .map(|key| evaluator.evaluate(key, context, ValueKind::Json, None))
            .collect()
    }
}

#[tonic::async_trait]
impl EvaluationService for EvaluationApi {
    async fn evaluate(
        &self,
        request: Request<pb::EvaluateRequest>,
    ) -> Result<Response<pb::EvaluateResponse>, Status> {
        self.hub
            .metrics()
            .observed("Evaluate", async {
                let (key, environment) = self.environment(request.metadata()).await?;
                let request = request.into_inner();
                if request.flag_key.is_empty() {
                    return Err(Status::invalid_argument("flag_key: must not be empty"));
                }
                let default = request.default_value.as_ref();
                let kind = requested_kind(request.kind, default)?;
                let context = read_context(request.context.as_ref())?;
                let held = environment.current();
                let evaluator = Evaluator::new(&held.ruleset, key.kind);
                let result = evaluator.evaluate(&request.flag_key, &context, kind, default);
                self.count(&environment, "Evaluate", 1);
                Ok(Response::new(pb::EvaluateResponse {
                    result: Some(result),
                    environment_version: held.version,
                }))
            })
            .await
    }

    async fn evaluate_all(
        &self,
        request: Request<pb::EvaluateAllRequest>,
    ) -> Result<Response<pb::EvaluateAllResponse>, Status> {
        self.hub
            .metrics()
            .observed("EvaluateAll", async {
                let (key, environment) = self.environment(request.metadata()).await?;
                let request = request.into_inner();
                check_flag_keys(&request.flag_keys)?;
                let context = read_context(request.context.as_ref())?;
                let held = environment.current();
                let evaluator = Evaluator::new(&held.ruleset, key.kind);
                let results = evaluate_many(&evaluator, &context, &request.flag_keys);
                self.count(&environment, "EvaluateAll", results.len());
                Ok(Response::new(pb::EvaluateAllResponse {
                    results,
                    environment_version: held.version,
                }))
            })
            .await
    }

    type WatchStream = ResponseStream<pb::WatchResponse>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.hub
            .metrics()
            .observed("Watch", async {
                let (key, environment) = self.environment(request.metadata()).await?;
                let guard = StreamGuard::open(&self.hub, "watch", key.id)?;
                let request = request.into_inner();
                check_flag_keys(&request.flag_keys)?;
                streams::check_resume_version(request.version)?;
                let context = read_context(request.context.as_ref())?;
                let updates = environment.subscribe();
                let held = environment.current();
                let mut watcher = Watcher {
                    key_kind: key.kind,
                    listed: request.flag_keys,
                    context,
                    previous: held.clone(),
                    version: held.version,
                    hub: self.hub.clone(),
                    environment: environment.clone(),
                };
                let values = watcher.all_values(&held);
                let first = vec![pb::WatchResponse {
                    event: Some(pb::watch_response::Event::Values(pb::WatchValues {
                        results: values,
                        environment_version: held.version,
                    })),
                }];
                Ok(Response::new(streams::spawn_stream(
                    &self.hub,
                    environment,
                    updates,
                    first,
                    watcher,
                    guard,
                )))
            })
            .await
    }
}

/// The state of one Watch stream: what it last sent for each flag.
struct Watcher {
    key_kind: SdkKeyKind,
    listed: Vec<String>,
    context: RequestContext,
    /// The state whose values the client holds: every watched result sent so far is this
    /// state's evaluation for the context (evaluation is a pure function of ruleset and
    /// context), so the stream keeps no copy of what it sent and costs no memory per flag.
    previous: Arc<Loaded>,
    version: i64,
    hub: Hub,
    environment: Arc<Environment>,
}

/// Whether two results would look the same to a watcher: everything but the flag's version
/// counts (a change of a flag that leaves the value and the reason alone is no change).
fn same_to_watcher(a: &pb::EvaluationResult, b: &pb::EvaluationResult) -> bool {
    a.flag_key == b.flag_key
        && a.value == b.value
        && a.variation == b.variation
        && a.reason == b.reason
        && a.in_experiment == b.in_experiment
        && a.experiment_key == b.experiment_key
}

impl Watcher {
    /// Every watched result, remembered as sent.
    fn all_values(&mut self, state: &Arc<Loaded>) -> Vec<pb::EvaluationResult> {
        let evaluator = Evaluator::new(&state.ruleset, self.key_kind);
        let results = evaluate_many(&evaluator, &self.context, &self.listed);
        self.previous = state.clone();
        self.count(results.len());
        results
    }

    /// Whether the stream sends a result for `key` while `evaluator`'s ruleset is current:
    /// a listed key always; otherwise a flag that exists and that the key may see.
    fn watches(&self, evaluator: &Evaluator<'_>, key: &str) -> bool {
        !self.listed.is_empty()
            || (evaluator.view.visible(key) && evaluator.view.ruleset().flag_index(key).is_some())
    }

    fn count(&self, flags: usize) {
        self.hub
            .metrics()
            .count_evaluations(&self.environment.label, "Watch", flags);
    }

    /// The changes between what was sent and `ruleset`, for the flags in `candidates`
    /// (`None`: every flag).
    fn changes(
        &mut self,
        state: &Arc<Loaded>,
        candidates: Option<&HashSet<String>>,
        version: i64,
    ) -> Option<pb::WatchResponse> {
        let ruleset = &state.ruleset;
        let evaluator = Evaluator::new(ruleset, self.key_kind);
        let keys: Vec<String> = if !self.listed.is_empty() {
            self.listed
                .iter()
                .filter(|key| candidates.is_none_or(|c| c.contains(*key)))
                .cloned()
                .collect()
        } else {
            match candidates {
                Some(candidates) => candidates.iter().cloned().collect(),
                None => {
                    let mut keys: Vec<String> =
                        evaluator.view.visible_keys().map(str::to_owned).collect();
                    let before = Evaluator::new(&self.previous.ruleset, self.key_kind);
                    keys.extend(before.view.visible_keys().map(str::to_owned));
                    keys.sort();
                    keys.dedup();
                    keys
                }
            }
        };
        let before = Evaluator::new(&self.previous.ruleset, self.key_kind);
        let mut updated = Vec::new();
        let mut removed = Vec::new();
        for key in keys {
            let sent = self
                .watches(&before, &key)
                .then(|| before.evaluate(&key, &self.context, ValueKind::Json, None));
            if self.watches(&evaluator, &key) {
                let result = evaluator.evaluate(&key, &self.context, ValueKind::Json, None);
                if !sent.is_some_and(|sent| same_to_watcher(&sent, &result)) {
                    updated.push(result);
                }
            } else if sent.is_some() {
                removed.push(key);
            }
        }
        self.count(updated.len());
        self.previous = state.clone();
        self.version = version;
        if updated.is_empty() && removed.is_empty() {
            return None;
        }
        updated.sort_by(|a, b| a.flag_key.cmp(&b.flag_key));
        removed.sort();
        Some(pb::WatchResponse {
            event: Some(pb::watch_response::Event::Changes(pb::WatchChanges {
                updated,
                removed,
                environment_version: version,
            })),
        })
    }
}

impl StreamHandler for Watcher {
    type Message = pb::WatchResponse;

    async fn on_update(&mut self, update: &Update) -> Result<Vec<pb::WatchResponse>, Status> {
        if update.state.version <= self.version {
            return Ok(Vec::new());
        }
        // A missed update means unknown changes: compare everything.
        let candidates = if update.from_version == self.version {
            update.affected.as_ref()
        } else {
            None
        };
        Ok(self
            .changes(&update.state, candidates, update.state.version)
            .into_iter()
            .collect())
    }

    async fn on_missed(
        &mut self,
        environment: &Environment,
    ) -> Result<Vec<pb::WatchResponse>, Status> {
        let held = environment.current();
        Ok(self
            .changes(&held, None, held.version)
            .into_iter()
            .collect())
    }

    fn heartbeat(&self) -> pb::WatchResponse {
        pb::WatchResponse {
            event: Some(pb::watch_response::Event::Heartbeat(streams::heartbeat(
                self.version,
            ))),
        }
    }
}
