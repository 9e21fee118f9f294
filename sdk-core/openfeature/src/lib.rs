//! Vexil as a provider of OpenFeature's Rust SDK ([`open_feature`]), over [`vexil_core`].
//!
//! Already on OpenFeature? One line changes:
//!
//! ```no_run
//! # async fn run() -> Result<(), vexil_core::Error> {
//! use open_feature::{EvaluationContext, OpenFeature};
//! use vexil_openfeature::VexilProvider;
//!
//! let provider = VexilProvider::new(
//!     vexil_core::Config::new("vxl-server-…").with_endpoint("http://127.0.0.1:50051"),
//! )?;
//! let mut api = OpenFeature::singleton_mut().await;
//! api.set_provider(provider).await;
//! let client = api.create_client();
//! let alice = EvaluationContext::default()
//!     .with_targeting_key("alice")
//!     .with_custom_field("plan", "pro");
//! let on = client.get_bool_value("new-checkout", Some(&alice), None).await.unwrap_or(false);
//! # Ok(()) }
//! ```
//!
//! Each call's evaluation context becomes a Vexil context: `targeting_key` is the key, the
//! field `kind` the kind (`user` by default), other fields attributes (date-times as RFC
//! 3339). Nested values are a `Struct` field holding a `serde_json::Value`. A multi-kind
//! context is `kind = "multi"` with one `Struct` field per kind, each a JSON object with its
//! `targetingKey`. Reasons are OpenFeature's (`TARGETING_MATCH`, `DEFAULT`, `SPLIT` in an
//! experiment, `DISABLED`; `CACHED` and `STALE` for values not fresh from the server), with
//! Vexil's own in the flag metadata; errors are OpenFeature's codes. The provider's status
//! is the client's (`STALE` while the server is out of reach). OpenFeature's Rust SDK has no
//! provider events or tracking yet: [`VexilProvider::client`] gives the client for change
//! listeners, `track` and `flush`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use open_feature::provider::{
    FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails,
};
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationError, EvaluationErrorCode,
    EvaluationReason, EvaluationResult, FlagMetadata, StructValue, Value as OpenFeatureValue,
};
use serde_json::{Map, Value};
use vexil_core::{Client, Config, Detail, ErrorKind, Reason, Source, Status, ValueKind};

/// How long [`FeatureProvider::initialize`] waits for the first data by default.
pub const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`vexil_core::Client`] as an OpenFeature provider.
#[derive(Debug, Clone)]
pub struct VexilProvider {
    client: Arc<Client>,
    metadata: ProviderMetadata,
    init_timeout: Duration,
}

impl VexilProvider {
    /// A provider over a new client; see [`Client::new`].
    pub fn new(config: Config) -> Result<VexilProvider, vexil_core::Error> {
        Ok(VexilProvider::from_client(Client::new(config)?))
    }

    /// A provider over a client made elsewhere.
    pub fn from_client(client: Client) -> VexilProvider {
        VexilProvider {
            client: Arc::new(client),
            metadata: ProviderMetadata::new("Vexil"),
            init_timeout: DEFAULT_INIT_TIMEOUT,
        }
    }

    /// How long `initialize` waits for the first data (default 5 s).
    pub fn with_init_timeout(mut self, timeout: Duration) -> VexilProvider {
        self.init_timeout = timeout;
        self
    }

    /// The client underneath, for what OpenFeature's Rust SDK has no word for yet: change
    /// listeners, `track`, `flush`, `close`.
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    fn detail<T>(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
        kind: ValueKind,
        value: impl FnOnce(Value) -> Result<T, String>,
    ) -> EvaluationResult<ResolutionDetails<T>> {
        let context = to_vexil_context(context)?;
        let detail = self
            .client
            .variation_detail(flag_key, &context, kind, &Value::Null);
        if let Reason::Error { error_kind } = &detail.reason {
            return Err(error(*error_kind));
        }
        let resolution = resolution(&detail);
        let converted = value(detail.value).map_err(|message| EvaluationError {
            code: EvaluationErrorCode::TypeMismatch,
            message: Some(message),
        })?;
        Ok(ResolutionDetails {
            value: converted,
            variant: resolution.variant,
            reason: resolution.reason,
            flag_metadata: resolution.flag_metadata,
        })
    }
}

/// The OpenFeature error of a Vexil error kind.
fn error(kind: ErrorKind) -> EvaluationError {
    let code = match kind {
        ErrorKind::FlagNotFound => EvaluationErrorCode::FlagNotFound,
        ErrorKind::WrongType => EvaluationErrorCode::TypeMismatch,
        ErrorKind::MalformedFlag => EvaluationErrorCode::ParseError,
        ErrorKind::InvalidContext => EvaluationErrorCode::InvalidContext,
        ErrorKind::ClientNotReady => EvaluationErrorCode::ProviderNotReady,
    };
    EvaluationError {
        code,
        message: Some(kind.as_str().to_owned()),
    }
}

/// The reason, variant and metadata of a served detail (its value is converted apart).
fn resolution(detail: &Detail<Value>) -> ResolutionDetails<()> {
    let reason = match (&detail.source, &detail.reason) {
        (Source::Cache, _) => EvaluationReason::Cached,
        (Source::Stale, _) => EvaluationReason::Other("STALE".into()),
        (_, Reason::TargetMatch | Reason::RuleMatch { .. }) => EvaluationReason::TargetingMatch,
        (_, Reason::Fallthrough) if detail.in_experiment => EvaluationReason::Split,
        (_, Reason::Fallthrough) => EvaluationReason::Default,
        _ => EvaluationReason::Disabled,
    };
    let mut metadata = FlagMetadata::default()
        .with_value("vexilReason", detail.reason.kind_or_error().to_owned())
        .with_value("inExperiment", detail.in_experiment)
        .with_value("flagVersion", detail.flag_version)
        .with_value("source", detail.source.as_str().to_owned());
    if let Some((index, id)) = detail.reason.rule() {
        metadata = metadata
            .with_value("ruleIndex", i64::try_from(index).unwrap_or(i64::MAX))
            .with_value("ruleId", id.clone());
    }
    if let Some(key) = detail.reason.prerequisite_key() {
        metadata = metadata.with_value("prerequisiteKey", key.clone());
    }
    if let Some(experiment) = &detail.experiment_key {
        metadata = metadata.with_value("experimentKey", experiment.clone());
    }
    ResolutionDetails {
        value: (),
        variant: detail.variation.map(|v| v.to_string()),
        reason: Some(reason),
        flag_metadata: Some(metadata),
    }
}

/// Vexil's context (its JSON form) for an OpenFeature evaluation context; see the crate
/// documentation. `TARGETING_KEY_MISSING` when there is no key, `INVALID_CONTEXT` for a
/// `Struct` field that holds something other than a `serde_json::Value`.
pub fn to_vexil_context(context: &EvaluationContext) -> EvaluationResult<Value> {
    let fields = &context.custom_fields;
    let is_multi =
        matches!(fields.get("kind"), Some(EvaluationContextFieldValue::String(k)) if k == "multi");
    if !is_multi {
        return single(context.targeting_key.as_deref(), fields.iter(), "context");
    }
    let mut contexts = Vec::new();
    let mut kinds: Vec<&String> = fields.keys().filter(|k| *k != "kind").collect();
    kinds.sort();
    for kind in kinds {
        let object = match field_json(kind, &fields[kind])? {
            Value::Object(object) => object,
            _ => {
                return Err(invalid(format!(
                    "context.{kind}: each kind of a multi-kind context is an object with its targetingKey"
                )));
            }
        };
        let key = object
            .get("targetingKey")
            .or_else(|| object.get("key"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut one = single_from_json(key.as_deref(), object, &format!("context.{kind}"))?;
        one["kind"] = Value::from(kind.as_str());
        contexts.push(one);
    }
    Ok(serde_json::json!({ "kind": "multi", "contexts": contexts }))
}

fn single<'a>(
    key: Option<&str>,
    fields: impl Iterator<Item = (&'a String, &'a EvaluationContextFieldValue)>,
    path: &str,
) -> EvaluationResult<Value> {
    let mut object = Map::new();
    for (name, value) in fields {
        object.insert(name.clone(), field_json(name, value)?);
    }
    single_from_json(key, object, path)
}

fn single_from_json(
    key: Option<&str>,
    mut object: Map<String, Value>,
    path: &str,
) -> EvaluationResult<Value> {
    let key = match key {
        Some(key) if !key.is_empty() => key.to_owned(),
        _ => match object.get("key").and_then(Value::as_str) {
            Some(key) if !key.is_empty() => key.to_owned(),
            _ => {
                return Err(EvaluationError {
                    code: EvaluationErrorCode::TargetingKeyMissing,
                    message: Some(format!("{path}.targetingKey: required, the context's key")),
                });
            }
        },
    };
    let kind = object.remove("kind");
    object.remove("targetingKey");
    object.remove("key");
    let mut out = Map::new();
    if let Some(kind) = kind {
        out.insert("kind".into(), kind);
    }
    out.insert("key".into(), Value::from(key));
    out.insert("attributes".into(), Value::Object(object));
    Ok(Value::Object(out))
}

fn field_json(name: &str, value: &EvaluationContextFieldValue) -> EvaluationResult<Value> {
    Ok(match value {
        EvaluationContextFieldValue::Bool(b) => Value::from(*b),
        EvaluationContextFieldValue::Int(i) => Value::from(*i),
        EvaluationContextFieldValue::Float(f) => Value::from(*f),
        EvaluationContextFieldValue::String(s) => Value::from(s.as_str()),
        EvaluationContextFieldValue::DateTime(at) => at
            .format(&time::format_description::well_known::Rfc3339)
            .map(Value::from)
            .map_err(|err| invalid(format!("context.{name}: {err}")))?,
        EvaluationContextFieldValue::Struct(any) => {
            any.downcast_ref::<Value>().cloned().ok_or_else(|| {
                invalid(format!(
                    "context.{name}: a Struct field must hold a serde_json::Value"
                ))
            })?
        }
    })
}

fn invalid(message: String) -> EvaluationError {
    EvaluationError {
        code: EvaluationErrorCode::InvalidContext,
        message: Some(message),
    }
}

/// OpenFeature's structure of a JSON value.
fn open_feature_value(value: Value) -> OpenFeatureValue {
    match value {
        Value::Null => OpenFeatureValue::Struct(StructValue::default()),
        Value::Bool(b) => OpenFeatureValue::Bool(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => OpenFeatureValue::Int(i),
            None => OpenFeatureValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => OpenFeatureValue::String(s),
        Value::Array(items) => {
            OpenFeatureValue::Array(items.into_iter().map(open_feature_value).collect())
        }
        Value::Object(object) => OpenFeatureValue::Struct(StructValue {
            fields: object
                .into_iter()
                .map(|(name, item)| (name, open_feature_value(item)))
                .collect(),
        }),
    }
}

#[async_trait]
impl FeatureProvider for VexilProvider {
    /// Waits (off the async threads) for the first data, up to the init timeout.
    async fn initialize(&mut self, _context: &EvaluationContext) {
        let client = self.client.clone();
        let timeout = self.init_timeout;
        let _ = tokio::task::spawn_blocking(move || client.wait_for_initialization(timeout)).await;
    }

    fn status(&self) -> ProviderStatus {
        match self.client.status() {
            Status::Ready | Status::Offline => ProviderStatus::Ready,
            Status::Stale { .. } => ProviderStatus::STALE,
            Status::Failed { .. } | Status::Closed => ProviderStatus::Error,
            Status::Initializing => ProviderStatus::NotReady,
        }
    }

    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        self.detail(flag_key, context, ValueKind::Bool, |value| {
            value.as_bool().ok_or_else(|| "not a boolean".to_owned())
        })
    }

    async fn resolve_int_value(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        self.detail(flag_key, context, ValueKind::Number, |value| {
            let number = value.as_f64().ok_or_else(|| "not a number".to_owned())?;
            match value.as_i64() {
                Some(whole) => Ok(whole),
                None if number.fract() == 0.0 && number.abs() < 9.0e15 => Ok(number as i64),
                None => Err(format!("{number} is not a whole number")),
            }
        })
    }

    async fn resolve_float_value(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        self.detail(flag_key, context, ValueKind::Number, |value| {
            value.as_f64().ok_or_else(|| "not a number".to_owned())
        })
    }

    async fn resolve_string_value(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        self.detail(flag_key, context, ValueKind::String, |value| match value {
            Value::String(s) => Ok(s),
            _ => Err("not a string".to_owned()),
        })
    }

    async fn resolve_struct_value(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        self.detail(
            flag_key,
            context,
            ValueKind::Json,
            |value| match open_feature_value(value) {
                OpenFeatureValue::Struct(structure) => Ok(structure),
                _ => Err("the flag's value is not an object".to_owned()),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contexts_follow_the_documented_convention() {
        let alice = EvaluationContext::default()
            .with_targeting_key("alice")
            .with_custom_field("plan", "pro")
            .with_custom_field("seats", 5)
            .with_custom_field(
                "address",
                EvaluationContextFieldValue::Struct(Arc::new(json!({"city": "Paris"}))),
            );
        assert_eq!(
            to_vexil_context(&alice).unwrap(),
            json!({"key": "alice", "attributes": {"plan": "pro", "seats": 5, "address": {"city": "Paris"}}})
        );
        let org = EvaluationContext::default()
            .with_targeting_key("acme")
            .with_custom_field("kind", "org");
        assert_eq!(
            to_vexil_context(&org).unwrap(),
            json!({"kind": "org", "key": "acme", "attributes": {}})
        );
        let multi = EvaluationContext::default()
            .with_custom_field("kind", "multi")
            .with_custom_field(
                "user",
                EvaluationContextFieldValue::Struct(Arc::new(json!({"targetingKey": "alice"}))),
            )
            .with_custom_field(
                "org",
                EvaluationContextFieldValue::Struct(Arc::new(
                    json!({"targetingKey": "acme", "plan": "pro"}),
                )),
            );
        let converted = to_vexil_context(&multi).unwrap();
        assert_eq!(
            converted,
            json!({"kind": "multi", "contexts": [
                {"kind": "org", "key": "acme", "attributes": {"plan": "pro"}},
                {"kind": "user", "key": "alice", "attributes": {}}
            ]})
        );
        assert!(vexil_core::context_from_json(&converted, "context").is_ok());
    }

    #[test]
    fn contexts_that_cannot_be_read_are_named() {
        let none = EvaluationContext::default().with_custom_field("plan", "pro");
        let err = to_vexil_context(&none).unwrap_err();
        assert_eq!(err.code, EvaluationErrorCode::TargetingKeyMissing);
        let opaque = EvaluationContext::default()
            .with_targeting_key("a")
            .with_custom_field("thing", EvaluationContextFieldValue::Struct(Arc::new(7_u8)));
        let err = to_vexil_context(&opaque).unwrap_err();
        assert_eq!(err.code, EvaluationErrorCode::InvalidContext);
        assert!(err.message.unwrap().starts_with("context.thing: "));
    }
}
