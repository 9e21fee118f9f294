//! EventService: analytics events (exposures, track events, evaluation summaries) published
//! by SDKs with a key of any kind, stored per environment for experiment analytics (layout
//! and idempotency: `storage/events.rs`).
//!
//! A batch is all or nothing: one invalid event refuses the whole batch with
//! `INVALID_ARGUMENT` naming the field (`track_events[2].value: …`), and nothing is stored.
//! An SDK that retries an unchanged batch gets the same answer, so a bad event cannot be
//! half-stored and then duplicated by the retries of the rest.

use std::sync::Arc;

use prost_types::Timestamp;
use serde_json::Value;
use tonic::{Request, Response, Status};
use vexil_engine::Context;
use vexil_proto::v1 as pb;
use vexil_proto::v1::event_service_server::EventService;

use crate::convert;
use crate::limits::MAX_KEY_LEN;
use crate::live::Hub;
use crate::sdk_auth::SdkAuth;
use crate::status::from_storage;
use crate::storage::{
    EvaluationCounter, EvaluationSummary, EventBatch, EventContext, ExposureEvent, Millis, SdkKey,
    StoredBatch, TrackEvent,
};

/// Longest batch id, in characters.
pub const MAX_BATCH_ID_LEN: usize = 128;
/// Most events (exposures, track events and summaries together) in one batch.
pub const MAX_EVENTS: usize = 10_000;
/// Most evaluation counters in one batch, over all its summaries.
pub const MAX_COUNTERS: usize = 100_000;
/// Longest SDK name or version, in bytes.
const MAX_SDK_TEXT: usize = 256;

/// The EventService.
#[derive(Debug, Clone)]
pub struct EventApi {
    hub: Hub,
    auth: Arc<SdkAuth>,
}

impl EventApi {
    pub fn new(hub: Hub, auth: Arc<SdkAuth>) -> EventApi {
        EventApi { hub, auth }
    }

    /// Counts a batch; events only when they were stored (a duplicate stored nothing).
    fn count(&self, key: &SdkKey, batch: &EventBatch, stored: StoredBatch) {
        let metrics = self.hub.metrics();
        if stored.duplicate {
            metrics
                .event_batches
                .with_label_values(&["duplicate"])
                .inc();
            return;
        }
        metrics.event_batches.with_label_values(&["stored"]).inc();
        let environment = format!("{}/{}", key.project_key, key.environment_key);
        for (kind, n) in [
            ("exposure", batch.exposures.len()),
            ("track", batch.track_events.len()),
            ("summary", batch.summaries.len()),
        ] {
            if n > 0 {
                metrics
                    .events
                    .with_label_values(&[environment.as_str(), kind])
                    .inc_by(n as u64);
            }
        }
    }
}

fn invalid(message: String) -> Status {
    Status::invalid_argument(message)
}

/// A required text of 1 to `max` characters.
fn required(field: &str, value: &str, max: usize) -> Result<(), Status> {
    if value.is_empty() {
        return Err(invalid(format!("{field}: must not be empty")));
    }
    bounded(field, value, max)
}

/// A text of at most `max` characters.
fn bounded(field: &str, value: &str, max: usize) -> Result<(), Status> {
    let len = value.chars().count();
    if len > max {
        return Err(invalid(format!(
            "{field}: is {len} characters long, the most is {max}"
        )));
    }
    Ok(())
}

fn time(field: &str, time: Option<&Timestamp>) -> Result<Millis, Status> {
    time.map(convert::millis)
        .ok_or_else(|| invalid(format!("{field}: required")))
}

/// A context the engine accepts, in its stored form, with the names of the attributes the
/// SDK left out (private attributes).
fn context(field: &str, context: Option<&pb::Context>) -> Result<EventContext, Status> {
    let context = context.ok_or_else(|| invalid(format!("{field}: required")))?;
    let parsed = Context::from_json(&convert::context_to_json(context))
        .map_err(|err| invalid(format!("{field}: {err}")))?;
    let mut stored = EventContext::new(&parsed);
    if context.kind == "multi" {
        let stored_parts = stored
            .json
            .get_mut("contexts")
            .and_then(Value::as_array_mut);
        for (i, (sent, part)) in context
            .contexts
            .iter()
            .zip(stored_parts.into_iter().flatten())
            .enumerate()
        {
            keep_redacted_names(&format!("{field}.contexts[{i}]"), sent, part)?;
        }
    } else {
        keep_redacted_names(field, context, &mut stored.json)?;
    }
    Ok(stored)
}

/// Most attribute names one context may list as redacted.
const MAX_REDACTED_ATTRIBUTES: usize = 1_000;
/// Longest redacted attribute name (an attribute reference), in characters.
const MAX_ATTRIBUTE_REFERENCE_LEN: usize = 1_024;

/// Copies the `redacted_attributes` of one single-kind context as sent into its stored JSON.
fn keep_redacted_names(field: &str, sent: &pb::Context, stored: &mut Value) -> Result<(), Status> {
    if sent.redacted_attributes.is_empty() {
        return Ok(());
    }
    let count = sent.redacted_attributes.len();
    if count > MAX_REDACTED_ATTRIBUTES {
        return Err(invalid(format!(
            "{field}.redacted_attributes: lists {count} names, the most is {MAX_REDACTED_ATTRIBUTES}"
        )));
    }
    for (i, name) in sent.redacted_attributes.iter().enumerate() {
        required(
            &format!("{field}.redacted_attributes[{i}]"),
            name,
            MAX_ATTRIBUTE_REFERENCE_LEN,
        )?;
    }
    if let Some(object) = stored.as_object_mut() {
        let names = sent.redacted_attributes.iter().cloned().map(Value::String);
        object.insert("redacted_attributes".into(), Value::Array(names.collect()));
    }
    Ok(())
}

fn error_kind(field: &str, kind: i32) -> Result<Option<String>, Status> {
    let name = match pb::ErrorKind::try_from(kind) {
        Ok(pb::ErrorKind::Unspecified) => return Ok(None),
        Ok(pb::ErrorKind::FlagNotFound) => "flag_not_found",
        Ok(pb::ErrorKind::WrongType) => "wrong_type",
        Ok(pb::ErrorKind::MalformedFlag) => "malformed_flag",
        Ok(pb::ErrorKind::InvalidContext) => "invalid_context",
        Ok(pb::ErrorKind::ClientNotReady) => "client_not_ready",
        Err(_) => return Err(invalid(format!("{field}: unknown error kind {kind}"))),
    };
    Ok(Some(name.to_owned()))
}

fn exposure(i: usize, e: pb::ExposureEvent) -> Result<ExposureEvent, Status> {
    let field = |name: &str| format!("exposures[{i}].{name}");
    required(&field("flag_key"), &e.flag_key, MAX_KEY_LEN)?;
    bounded(&field("experiment_key"), &e.experiment_key, MAX_KEY_LEN)?;
    Ok(ExposureEvent {
        at: time(&field("time"), e.time.as_ref())?,
        context: context(&field("context"), e.context.as_ref())?,
        flag_key: e.flag_key,
        flag_version: e.flag_version,
        experiment_key: e.experiment_key,
        variation: i64::from(e.variation),
        in_experiment: e.in_experiment,
    })
}

fn track_event(i: usize, e: pb::TrackEvent) -> Result<TrackEvent, Status> {
    let field = |name: &str| format!("track_events[{i}].{name}");
    required(&field("name"), &e.name, MAX_KEY_LEN)?;
    if e.value.is_some_and(|v| !v.is_finite()) {
        return Err(invalid(format!(
            "{}: must be a finite number",
            field("value")
        )));
    }
    Ok(TrackEvent {
        at: time(&field("time"), e.time.as_ref())?,
        context: context(&field("context"), e.context.as_ref())?,
        name: e.name,
        value: e.value,
        data: e.data.map(|data| {
            Value::Object(
                data.fields
                    .iter()
                    .map(|(k, v)| (k.clone(), convert::value_to_json(v)))
                    .collect(),
            )
        }),
    })
}

fn summary(i: usize, s: pb::EvaluationSummary) -> Result<EvaluationSummary, Status> {
    let field = |name: &str| format!("summaries[{i}].{name}");
    required(&field("flag_key"), &s.flag_key, MAX_KEY_LEN)?;
    let start = time(&field("start"), s.start.as_ref())?;
    let end = time(&field("end"), s.end.as_ref())?;
    if end < start {
        return Err(invalid(format!("{}: is before start", field("end"))));
    }
    let counters = s
        .counters
        .iter()
        .enumerate()
        .map(|(j, c)| {
            let field = |name: &str| format!("summaries[{i}].counters[{j}].{name}");
            Ok(EvaluationCounter {
                flag_version: c.flag_version,
                variation: c.variation.map(i64::from),
                error_kind: error_kind(&field("error_kind"), c.error_kind)?,
                count: i64::try_from(c.count)
                    .map_err(|_| invalid(format!("{}: is too large", field("count"))))?,
            })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    Ok(EvaluationSummary {
        start,
        end,
        flag_key: s.flag_key,
        counters,
    })
}

/// The batch of a request, every event checked; the first problem refuses it all.
fn read_batch(request: pb::PublishRequest) -> Result<EventBatch, Status> {
    required("batch_id", &request.batch_id, MAX_BATCH_ID_LEN)?;
    crate::limits::text("sdk_name", &request.sdk_name, MAX_SDK_TEXT)?;
    crate::limits::text("sdk_version", &request.sdk_version, MAX_SDK_TEXT)?;
    let events = request.exposures.len() + request.track_events.len() + request.summaries.len();
    if events > MAX_EVENTS {
        return Err(invalid(format!(
            "exposures, track_events, summaries: {events} events in one batch, the most is {MAX_EVENTS}"
        )));
    }
    let counters: usize = request.summaries.iter().map(|s| s.counters.len()).sum();
    if counters > MAX_COUNTERS {
        return Err(invalid(format!(
            "summaries: {counters} counters in one batch, the most is {MAX_COUNTERS}"
        )));
    }
    Ok(EventBatch {
        batch_id: request.batch_id,
        sdk_name: request.sdk_name,
        sdk_version: request.sdk_version,
        exposures: read_each(request.exposures, exposure)?,
        track_events: read_each(request.track_events, track_event)?,
        summaries: read_each(request.summaries, summary)?,
    })
}

/// Reads each event of a list with `read`, which gets its index for the error it names.
fn read_each<T, U>(
    events: Vec<T>,
    read: impl Fn(usize, T) -> Result<U, Status>,
) -> Result<Vec<U>, Status> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| read(i, event))
        .collect()
}

#[tonic::async_trait]
impl EventService for EventApi {
    async fn publish(
        &self,
        request: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        self.hub
            .metrics()
            .observed("Publish", async {
                let key = self.auth.authenticate(request.metadata()).await?;
                let batch = read_batch(request.into_inner())?;
                let stored = self
                    .hub
                    .storage()
                    .store_event_batch(&key.project_key, &key.environment_key, &batch)
                    .await
                    .map_err(from_storage)?;
                self.count(&key, &batch, stored);
                Ok(Response::new(pb::PublishResponse {
                    accepted: stored.accepted,
                    duplicate: stored.duplicate,
                }))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(key: &str) -> Option<pb::Context> {
        Some(pb::Context {
            kind: "user".into(),
            key: key.into(),
            ..Default::default()
        })
    }

    fn track(name: &str, value: Option<f64>) -> pb::TrackEvent {
        pb::TrackEvent {
            time: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 5_000_000,
            }),
            name: name.into(),
            context: user("alice"),
            value,
            data: None,
        }
    }

    fn request(track_events: Vec<pb::TrackEvent>) -> pb::PublishRequest {
        pb::PublishRequest {
            batch_id: "b-1".into(),
            track_events,
            ..Default::default()
        }
    }

    #[test]
    fn a_valid_batch_is_read_with_times_in_milliseconds() {
        let batch = read_batch(request(vec![track("purchase", Some(9.5))])).unwrap();
        assert_eq!(batch.track_events[0].at, 1_700_000_000_005);
        assert_eq!(batch.track_events[0].context.key, "alice");
        assert_eq!(batch.len(), 1);
    }

    #[test]
    fn problems_name_the_field_and_its_index() {
        let mut bad = track("purchase", None);
        bad.context = user("");
        let err = read_batch(request(vec![track("a", None), bad])).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().starts_with("track_events[1].context: "),
            "{}",
            err.message()
        );
        let err = read_batch(request(vec![track("a", Some(f64::NAN))])).unwrap_err();
        assert!(err.message().starts_with("track_events[0].value: "));
        let err = read_batch(request(vec![track("", None)])).unwrap_err();
        assert!(err.message().starts_with("track_events[0].name: "));
        let mut long_id = request(vec![]);
        long_id.batch_id = "x".repeat(MAX_BATCH_ID_LEN + 1);
        assert!(
            read_batch(long_id)
                .unwrap_err()
                .message()
                .starts_with("batch_id: ")
        );
        let too_many = request(vec![track("a", None); MAX_EVENTS + 1]);
        assert!(read_batch(too_many).is_err());
    }

    #[test]
    fn redacted_attribute_names_are_stored_with_the_context() {
        let redacted = |names: &[&str]| pb::Context {
            kind: "user".into(),
            key: "alice".into(),
            redacted_attributes: names.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        };
        let mut event = track("purchase", None);
        event.context = Some(pb::Context {
            kind: "multi".into(),
            contexts: vec![
                redacted(&["email", "/address/street"]),
                pb::Context {
                    kind: "org".into(),
                    key: "acme".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        let batch = read_batch(request(vec![event])).unwrap();
        assert_eq!(
            batch.track_events[0].context.json,
            serde_json::json!({"kind": "multi", "contexts": [
                {"kind": "user", "key": "alice",
                 "redacted_attributes": ["email", "/address/street"]},
                {"kind": "org", "key": "acme"}]})
        );
        let mut event = track("purchase", None);
        event.context = Some(redacted(&["email", ""]));
        let err = read_batch(request(vec![event])).unwrap_err();
        assert_eq!(
            err.message(),
            "track_events[0].context.redacted_attributes[1]: must not be empty"
        );
        let mut event = track("purchase", None);
        let many = vec!["a"; MAX_REDACTED_ATTRIBUTES + 1];
        event.context = Some(redacted(&many));
        assert!(
            read_batch(request(vec![event]))
                .unwrap_err()
                .message()
                .starts_with("track_events[0].context.redacted_attributes: lists 1001 names")
        );
    }
}
