//! The client's background work: the Sync stream (local mode), the Watch stream (remote
//! mode), reconnection with backoff, and the event sender.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status as GrpcStatus};
use vexil_engine::model::RulesetData;
use vexil_engine::{Patch, Reason, Ruleset};
use vexil_proto::model as pbmodel;
use vexil_proto::v1 as pb;
use vexil_proto::v1::evaluation_service_client::EvaluationServiceClient;
use vexil_proto::v1::sync_service_client::SyncServiceClient;

use crate::data::{Data, RemoteValue, Source, now_millis};
use crate::{Config, Error, Inner, Mode, Status};

/// A stream healthy this long resets the backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

pub(crate) fn endpoint(config: &Config) -> Result<Endpoint, Error> {
    let invalid = |message: String| Error::InvalidEndpoint {
        endpoint: config.endpoint.clone(),
        message,
    };
    let mut endpoint = Endpoint::from_shared(config.endpoint.clone())
        .map_err(|err| invalid(err.to_string()))?
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    if config.endpoint.starts_with("https://") {
        endpoint = endpoint
            .tls_config(tonic::transport::ClientTlsConfig::new().with_webpki_roots())
            .map_err(|err| invalid(err.to_string()))?;
    } else if !config.endpoint.starts_with("http://") {
        return Err(invalid("must start with http:// or https://".into()));
    }
    Ok(endpoint)
}

/// Exponential backoff with jitter: `initial` doubling to `max`, each delay drawn between
/// half and all of the current step.
struct Backoff {
    initial: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    fn new(config: &Config) -> Backoff {
        Backoff {
            initial: config.initial_backoff,
            max: config.max_backoff.max(config.initial_backoff),
            step: config.initial_backoff,
        }
    }

    fn next(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let mut byte = [0u8; 1];
        let jitter = if getrandom::fill(&mut byte).is_ok() {
            f64::from(byte[0]) / 255.0
        } else {
            0.5
        };
        step.mul_f64(0.5 + jitter / 2.0)
    }

    fn reset(&mut self) {
        self.step = self.initial;
    }
}

/// How a stream ended.
enum Ended {
    /// Worth retrying.
    Retry(String),
    /// The key was refused: retrying cannot help.
    Refused(String),
    /// The client is closing.
    Closing,
}

impl From<GrpcStatus> for Ended {
    /// A call or stream that failed with `status`: retried, unless the key was refused.
    fn from(status: GrpcStatus) -> Ended {
        match status.code() {
            Code::Unauthenticated | Code::PermissionDenied => {
                Ended::Refused(format!("{:?}: {}", status.code(), status.message()))
            }
            _ => Ended::Retry(format!("{:?}: {}", status.code(), status.message())),
        }
    }
}

fn authed<T>(inner: &Inner, message: T) -> Request<T> {
    let mut request = Request::new(message);
    // A key a header cannot carry is sent without: the server refuses it as unauthenticated.
    let _ = vexil_proto::authorize(&mut request, &inner.config.sdk_key);
    request
}

/// Runs a stream again and again until the client closes or the key is refused.
async fn reconnecting<F, Fut>(inner: Arc<Inner>, mut run: F)
where
    F: FnMut(Arc<Inner>) -> Fut,
    Fut: Future<Output = (Ended, bool)>,
{
    let mut backoff = Backoff::new(&inner.config);
    let mut closing = inner.closing.subscribe();
    loop {
        let started = Instant::now();
        let (ended, got_data) = tokio::select! {
            ended = run(inner.clone()) => ended,
            _ = closing.wait_for(|c| *c) => (Ended::Closing, false),
        };
        inner.connected.store(false, Ordering::Relaxed);
        match ended {
            Ended::Closing => return,
            Ended::Refused(reason) => {
                tracing::error!(reason, "the server refused the SDK key; not retrying");
                inner.set_status(Status::Failed { reason });
                return;
            }
            Ended::Retry(reason) => {
                tracing::debug!(reason, "stream ended; reconnecting");
                if !matches!(**inner.data.load(), Data::Empty) || got_data {
                    inner.set_status(Status::Stale { reason });
                }
            }
        }
        if started.elapsed() >= HEALTHY_AFTER {
            backoff.reset();
        }
        let delay = backoff.next();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = closing.wait_for(|c| *c) => return,
        }
    }
}

/// Waits for the next message of a stream, or fails after the stream timeout.
async fn next_message<T>(inner: &Inner, stream: &mut tonic::Streaming<T>) -> Result<T, Ended> {
    match tokio::time::timeout(inner.config.stream_timeout, stream.message()).await {
        Err(_) => Err(Ended::Retry(format!(
            "no message for {:?}",
            inner.config.stream_timeout
        ))),
        Ok(Err(status)) => Err(status.into()),
        Ok(Ok(None)) => Err(Ended::Retry("the server ended the stream".into())),
        Ok(Ok(Some(message))) => Ok(message),
    }
}

fn mark_live(inner: &Inner) {
    inner.connected.store(true, Ordering::Relaxed);
    inner.set_status(Status::Ready);
}

/// Keeps the client's data current until it closes, reconnecting after each end: the
/// ruleset's sync stream in local mode, the identified context's watch stream in remote mode.
pub(crate) async fn data_loop(inner: Arc<Inner>, channel: Channel, mode: Mode) {
    reconnecting(inner, |inner| {
        let channel = channel.clone();
        async move {
            let mut got_data = false;
            let Err(ended) = match mode {
                Mode::Local => sync_once(&inner, channel, &mut got_data).await,
                Mode::Remote => watch_once(&inner, channel, &mut got_data).await,
            };
            (ended, got_data)
        }
    })
    .await;
}

// ----- local mode ------------------------------------------------------------------------------

/// The version to resume from: that of data from the server (live or cached).
fn resume_version(data: &Data) -> i64 {
    match data {
        Data::Ruleset {
            version,
            source: Source::Network | Source::Cache | Source::Stale,
            ..
        } => *version,
        _ => 0,
    }
}

/// Follows the sync stream until it ends (it never ends well: the error says how).
async fn sync_once(
    inner: &Arc<Inner>,
    channel: Channel,
    got_data: &mut bool,
) -> Result<Infallible, Ended> {
    let request = pb::SyncRequest {
        version: resume_version(&inner.data.load()),
        sdk_name: inner.config.sdk_name.clone(),
        sdk_version: inner.config.sdk_version.clone(),
    };
    let mut stream = SyncServiceClient::new(channel)
        .sync(authed(inner, request))
        .await?
        .into_inner();
    loop {
        let message = next_message(inner, &mut stream).await?;
        match message.event {
            Some(pb::sync_response::Event::Snapshot(snapshot)) => {
                apply_snapshot(inner, &snapshot);
                *got_data = true;
                mark_live(inner);
            }
            Some(pb::sync_response::Event::Patch(patch)) => {
                if let Err(reason) = apply_patch(inner, &patch) {
                    return Err(Ended::Retry(reason));
                }
                *got_data = true;
                mark_live(inner);
            }
            Some(pb::sync_response::Event::Heartbeat(beat)) => {
                if beat.environment_version != inner.data.load().version() {
                    // Held data is not what the server says we hold: resync.
                    return Err(Ended::Retry(format!(
                        "the server is at version {} but the client holds {}",
                        beat.environment_version,
                        inner.data.load().version()
                    )));
                }
                mark_live(inner);
            }
            None => {}
        }
    }
}

fn apply_snapshot(inner: &Inner, snapshot: &pb::Snapshot) {
    let typed = (
        snapshot
            .flags
            .iter()
            .map(pbmodel::flag_from_proto)
            .collect::<Result<Vec<_>, _>>(),
        snapshot
            .segments
            .iter()
            .map(|s| pbmodel::segment_from_proto(s, ""))
            .collect::<Result<Vec<_>, _>>(),
    );
    let ruleset = match typed {
        (Ok(flags), Ok(segments)) => Ruleset::from_model(RulesetData {
            version: u64::try_from(snapshot.version).unwrap_or_default(),
            flags,
            segments,
        }),
        // A flag this version cannot read is kept as malformed: through the JSON form.
        _ => {
            let value = json!({
                "version": snapshot.version,
                "flags": snapshot.flags.iter().map(pbmodel::flag_json_from_proto).collect::<Vec<_>>(),
                "segments": snapshot.segments.iter().map(pbmodel::segment_json_from_proto).collect::<Vec<_>>(),
            });
            match Ruleset::from_value(&value) {
                Ok(ruleset) => ruleset,
                Err(err) => {
                    tracing::warn!(error = %err, "unreadable snapshot ignored");
                    return;
                }
            }
        }
    };
    let changed = changed_flags(&inner.data.load(), &ruleset);
    inner.replace_data(
        Data::Ruleset {
            ruleset,
            version: snapshot.version,
            source: Source::Network,
            received_at: now_millis(),
            counters: Default::default(),
        },
        changed,
    );
}

/// Flags whose definition differs between the data held and a new ruleset.
pub(crate) fn changed_flags(old: &Data, new: &Ruleset) -> Vec<String> {
    let mut keys: BTreeSet<String> = new.flag_keys().map(str::to_owned).collect();
    match old {
        Data::Ruleset { ruleset, .. } => {
            keys.extend(ruleset.flag_keys().map(str::to_owned));
            keys.into_iter()
                .filter(|k| ruleset.flag_json(k) != new.flag_json(k))
                .collect()
        }
        Data::Values { values, .. } => {
            keys.extend(values.keys().cloned());
            keys.into_iter().collect()
        }
        Data::Empty => keys.into_iter().collect(),
    }
}

fn apply_patch(inner: &Inner, patch: &pb::Patch) -> Result<(), String> {
    let held = inner.data.load();
    let Data::Ruleset {
        ruleset, version, ..
    } = &**held
    else {
        return Err("a patch arrived without a ruleset".into());
    };
    if patch.from_version != *version {
        return Err(format!(
            "a patch from version {} does not apply to version {version}",
            patch.from_version
        ));
    }
    let engine_patch = Patch {
        version: u64::try_from(patch.version).unwrap_or_default(),
        upsert_flags: patch
            .upserted_flags
            .iter()
            .map(pbmodel::flag_json_from_proto)
            .collect(),
        delete_flags: patch.deleted_flags.clone(),
        upsert_segments: patch
            .upserted_segments
            .iter()
            .map(pbmodel::segment_json_from_proto)
            .collect(),
        delete_segments: patch.deleted_segments.clone(),
    };
    let patched = ruleset.patched(&engine_patch);
    let changed = if patch.upserted_segments.is_empty() && patch.deleted_segments.is_empty() {
        let mut keys: BTreeSet<String> =
            patch.upserted_flags.iter().map(|f| f.key.clone()).collect();
        keys.extend(patch.deleted_flags.iter().cloned());
        keys.into_iter().collect()
    } else {
        // A segment change may change any flag using it.
        patched.flag_keys().map(str::to_owned).collect()
    };
    drop(held);
    inner.replace_data(
        Data::Ruleset {
            ruleset: patched,
            version: patch.version,
            source: Source::Network,
            received_at: now_millis(),
            counters: Default::default(),
        },
        changed,
    );
    Ok(())
}

// ----- remote mode -----------------------------------------------------------------------------

/// Follows the watch stream of the identified context until it ends (it never ends well: the
/// error says how).
async fn watch_once(
    inner: &Arc<Inner>,
    channel: Channel,
    got_data: &mut bool,
) -> Result<Infallible, Ended> {
    let mut identified = inner.identified.subscribe();
    let Some(context) = identified.borrow_and_update().clone() else {
        // Nothing to watch until a context is identified.
        return Err(match identified.changed().await {
            Ok(()) => Ended::Retry("a context was identified".into()),
            Err(_) => Ended::Closing,
        });
    };
    let context_json = context.to_json();
    let Some(wire_context) = pbmodel::json_to_context(&context_json) else {
        return Err(Ended::Refused(
            "the identified context cannot be sent".into(),
        ));
    };
    let request = pb::WatchRequest {
        context: Some(wire_context),
        flag_keys: Vec::new(),
        version: inner.data.load().version(),
    };
    let mut stream = EvaluationServiceClient::new(channel)
        .watch(authed(inner, request))
        .await?
        .into_inner();
    loop {
        let message = tokio::select! {
            message = next_message(inner, &mut stream) => message?,
            // A new context: a new stream for it, at once.
            _ = identified.changed() => return Err(Ended::Retry("identify".into())),
        };
        match message.event {
            Some(pb::watch_response::Event::Values(values)) => {
                let map: HashMap<String, RemoteValue> = values
                    .results
                    .iter()
                    .map(|r| (r.flag_key.clone(), remote_value(r)))
                    .collect();
                let changed = match &**inner.data.load() {
                    Data::Values {
                        values: old,
                        context,
                        ..
                    } if *context == context_json => {
                        let mut keys: BTreeSet<&String> = map.keys().collect();
                        keys.extend(old.keys());
                        keys.into_iter()
                            .filter(|k| old.get(*k) != map.get(*k))
                            .cloned()
                            .collect()
                    }
                    _ => {
                        let mut keys: Vec<String> = map.keys().cloned().collect();
                        keys.sort();
                        keys
                    }
                };
                inner.replace_data(
                    Data::Values {
                        values: map,
                        context: context_json.clone(),
                        version: values.environment_version,
                        source: Source::Network,
                        received_at: now_millis(),
                    },
                    changed,
                );
                *got_data = true;
                mark_live(inner);
            }
            Some(pb::watch_response::Event::Changes(changes)) => {
                let held = inner.data.load();
                let Data::Values {
                    values, context, ..
                } = &**held
                else {
                    return Err(Ended::Retry("changes arrived before values".into()));
                };
                if *context != context_json {
                    return Err(Ended::Retry("changes for another context".into()));
                }
                let mut values = values.clone();
                let mut changed = Vec::new();
                for result in &changes.updated {
                    values.insert(result.flag_key.clone(), remote_value(result));
                    changed.push(result.flag_key.clone());
                }
                for key in &changes.removed {
                    values.remove(key);
                    changed.push(key.clone());
                }
                changed.sort();
                drop(held);
                inner.replace_data(
                    Data::Values {
                        values,
                        context: context_json.clone(),
                        version: changes.environment_version,
                        source: Source::Network,
                        received_at: now_millis(),
                    },
                    changed,
                );
                mark_live(inner);
            }
            Some(pb::watch_response::Event::Heartbeat(_)) if *got_data => mark_live(inner),
            Some(pb::watch_response::Event::Heartbeat(_)) | None => {}
        }
    }
}

fn remote_value(result: &pb::EvaluationResult) -> RemoteValue {
    RemoteValue {
        value: result.value.as_ref().map(pbmodel::value_to_json),
        variation: result.variation.map(|v| v as usize),
        reason: reason(result.reason.as_ref()),
        in_experiment: result.in_experiment,
        experiment_key: Some(result.experiment_key.clone()).filter(|k| !k.is_empty()),
        flag_version: result.flag_version,
    }
}

fn reason(reason: Option<&pb::Reason>) -> Reason<String> {
    use vexil_engine::ErrorKind as E;
    let Some(reason) = reason else {
        return Reason::Error {
            error_kind: E::MalformedFlag,
        };
    };
    match pb::ReasonKind::try_from(reason.kind) {
        Ok(pb::ReasonKind::Off) => Reason::Off,
        Ok(pb::ReasonKind::TargetMatch) => Reason::TargetMatch,
        Ok(pb::ReasonKind::RuleMatch) => Reason::RuleMatch {
            rule_index: reason.rule_index.unwrap_or_default() as usize,
            rule_id: reason.rule_id.clone(),
        },
        Ok(pb::ReasonKind::Fallthrough) => Reason::Fallthrough,
        Ok(pb::ReasonKind::PrerequisiteFailed) => Reason::PrerequisiteFailed {
            prerequisite_key: reason.prerequisite_key.clone(),
        },
        _ => Reason::Error {
            error_kind: match pb::ErrorKind::try_from(reason.error_kind) {
                Ok(pb::ErrorKind::FlagNotFound) => E::FlagNotFound,
                Ok(pb::ErrorKind::WrongType) => E::WrongType,
                Ok(pb::ErrorKind::InvalidContext) => E::InvalidContext,
                Ok(pb::ErrorKind::ClientNotReady) => E::ClientNotReady,
                _ => E::MalformedFlag,
            },
        },
    }
}

// ----- events ----------------------------------------------------------------------------------

pub(crate) async fn events_loop(
    inner: Arc<Inner>,
    channel: Channel,
    mut flush_requests: mpsc::UnboundedReceiver<crate::inner::FlushReply>,
) {
    let mut client = crate::events::client(channel);
    let sdk = (
        inner.config.sdk_name.clone(),
        inner.config.sdk_version.clone(),
    );
    let key = inner.config.sdk_key.clone();
    let mut ticks = tokio::time::interval(
        inner
            .config
            .events
            .flush_interval
            .max(Duration::from_millis(10)),
    );
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing = inner.closing.subscribe();
    // While batches cannot be delivered, the periodic flushes back off as the stream does
    // (the events stay queued), so that clients do not all retry at every interval against a
    // server that is down; a flush the application asks for is always tried.
    let mut backoff = Backoff::new(&inner.config);
    let mut retry_at: Option<tokio::time::Instant> = None;
    // When the next periodic flush may run, after one that delivered everything or not.
    let mut next_try = |delivered: bool| {
        if delivered {
            backoff.reset();
            None
        } else {
            Some(tokio::time::Instant::now() + backoff.next())
        }
    };
    enum Wake {
        Flush,
        Request(crate::inner::FlushReply),
        Stop,
    }
    loop {
        let wake = tokio::select! {
            _ = ticks.tick() => Wake::Flush,
            _ = inner.events.full.notified() => Wake::Flush,
            request = flush_requests.recv() => match request {
                Some(reply) => Wake::Request(reply),
                None => Wake::Stop,
            },
            _ = closing.wait_for(|c| *c) => Wake::Stop,
        };
        match wake {
            Wake::Flush => {
                if retry_at.is_some_and(|at| tokio::time::Instant::now() < at) {
                    continue;
                }
                let done = inner.events.flush(&mut client, &key, &sdk).await;
                retry_at = next_try(done);
            }
            Wake::Request(reply) => {
                let done = inner.events.flush(&mut client, &key, &sdk).await;
                retry_at = next_try(done);
                reply(done);
            }
            Wake::Stop => return,
        }
    }
}
