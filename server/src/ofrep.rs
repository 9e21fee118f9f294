//! The OpenFeature Remote Evaluation Protocol (OFREP) on the HTTP port, so that the generic
//! OFREP providers of every OpenFeature SDK (servers and browsers) evaluate Vexil flags
//! with no Vexil code:
//!
//! * `POST /ofrep/v1/evaluate/flags/{key}` evaluates one flag: `200` with `value`,
//!   `reason`, `variant` and `metadata`; `404` `FLAG_NOT_FOUND`; `400` for a context that
//!   cannot be evaluated (`TARGETING_KEY_MISSING`, `INVALID_CONTEXT`), a body that is not
//!   JSON (`PARSE_ERROR`) or a flag that cannot be served.
//! * `POST /ofrep/v1/evaluate/flags` evaluates every flag the key may see: `200` with
//!   `flags` (a failure item for a flag that cannot be served) and an `ETag` that is a hash
//!   of the results, so `If-None-Match` gets `304` exactly when nothing the caller would
//!   receive changed (date rules included).
//!
//! Keys: `Authorization: Bearer <SDK key>` or `X-API-Key: <SDK key>`, any kind; client and
//! mobile keys see client-side flags only, as on every evaluation path ([`crate::key_view`]).
//! `401` for a missing or unknown key, `403` for a page whose origin or key kind is refused.
//! Pages get the CORS of gRPC-web ([`crate::browser`], [`crate::origins`]).
//!
//! Contexts follow OpenFeature's evaluation context: `targetingKey` is the key (`key` when
//! there is no `targetingKey`), `kind` the kind (`user` when absent), every other field an
//! attribute. A multi-kind context is
//! `{"kind": "multi", "user": {"targetingKey": "u1", …}, "org": {"targetingKey": "o1"}}`:
//! each other field an object, one kind, named by the field.
//!
//! Reasons: `TARGET_MATCH` and `RULE_MATCH` are `TARGETING_MATCH`; `FALLTHROUGH` is
//! `DEFAULT`, or `SPLIT` when the context is in an experiment; `OFF` and
//! `PREREQUISITE_FAILED` are `DISABLED`. The metadata keeps Vexil's own: `vexilReason`,
//! `ruleIndex`, `ruleId`, `prerequisiteKey`, `inExperiment`, `experimentKey`,
//! `flagVersion`; a bulk response's own metadata has the `environmentVersion`. The variant
//! is the variation's index. A flag that
//! serves no value (off with no off variation) has no `value`: the caller's default.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tonic::Code;
use vexil_engine::{Context, ErrorKind, Evaluation, Reason, ValueKind};

use crate::browser;
use crate::key_view::{KeyView, RequestContext};
use crate::live::{Environment, Hub};
use crate::sdk_auth::SdkAuth;
use crate::storage::SdkKey;

/// The request headers OFREP providers send, which preflights allow.
const ALLOWED_HEADERS: &str = "authorization, content-type, x-api-key, if-none-match";
/// The response header a page must read to revalidate.
const EXPOSED_HEADERS: &str = "etag";

/// What the OFREP handlers need.
#[derive(Debug, Clone)]
pub struct Ofrep {
    pub hub: Hub,
    pub auth: Arc<SdkAuth>,
}

/// A finished request: the HTTP status, and the gRPC code it is metered as.
struct Answer {
    status: StatusCode,
    code: Code,
    body: Value,
    etag: Option<String>,
}

impl Answer {
    fn json(status: StatusCode, code: Code, body: Value) -> Answer {
        Answer {
            status,
            code,
            body,
            etag: None,
        }
    }

    fn refused(status: &tonic::Status) -> Answer {
        let http = match status.code() {
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::InvalidArgument => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Answer::json(
            http,
            status.code(),
            json!({ "errorDetails": status.message() }),
        )
    }
}

/// Why a request's context cannot be evaluated: an OFREP error code and details.
#[derive(Debug, PartialEq)]
pub struct ContextError {
    pub code: &'static str,
    pub details: String,
}

/// Vexil's context JSON for an OpenFeature evaluation context (see the module documentation).
pub fn vexil_context(context: &Value) -> Result<Value, ContextError> {
    let invalid = |details: String| ContextError {
        code: "INVALID_CONTEXT",
        details,
    };
    let Value::Object(fields) = context else {
        return Err(invalid("context: must be an object".into()));
    };
    if fields.get("kind").and_then(Value::as_str) != Some("multi") {
        return single_kind(fields, "context").map(Value::Object);
    }
    let mut contexts = Vec::new();
    for (name, value) in fields {
        if name == "kind" || name == "targetingKey" {
            continue;
        }
        let Value::Object(kind_fields) = value else {
            return Err(invalid(format!(
                "context.{name}: each kind of a multi-kind context is an object with its targetingKey"
            )));
        };
        let mut single = single_kind(kind_fields, &format!("context.{name}"))?;
        single.insert("kind".into(), Value::from(name.as_str()));
        contexts.push(Value::Object(single));
    }
    Ok(json!({ "kind": "multi", "contexts": contexts }))
}

/// `{"kind", "key", "attributes"}` of one kind's OpenFeature fields.
fn single_kind(
    fields: &Map<String, Value>,
    path: &str,
) -> Result<Map<String, Value>, ContextError> {
    let key_field = if fields.contains_key("targetingKey") {
        "targetingKey"
    } else {
        "key"
    };
    let key = match fields.get(key_field) {
        Some(Value::String(key)) if !key.is_empty() => key.clone(),
        Some(Value::String(_)) | None => {
            return Err(ContextError {
                code: "TARGETING_KEY_MISSING",
                details: format!("{path}.targetingKey: required, the context's key"),
            });
        }
        Some(_) => {
            return Err(ContextError {
                code: "INVALID_CONTEXT",
                details: format!("{path}.{key_field}: must be a string"),
            });
        }
    };
    let kind = fields
        .get("kind")
        .cloned()
        .unwrap_or_else(|| Value::from("user"));
    let attributes: Map<String, Value> = fields
        .iter()
        .filter(|(name, _)| *name != key_field && *name != "kind")
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let mut out = Map::with_capacity(3);
    out.insert("kind".into(), kind);
    out.insert("key".into(), Value::from(key));
    out.insert("attributes".into(), Value::Object(attributes));
    Ok(out)
}

/// The evaluation context of a request body `{"context": {…}}`, as the engine's.
fn read_request(body: &[u8]) -> Result<Context, (&'static str, String)> {
    let request: Value = serde_json::from_slice(body)
        .map_err(|err| ("PARSE_ERROR", format!("the body is not JSON: {err}")))?;
    let context = match &request {
        Value::Object(fields) => fields
            .get("context")
            .cloned()
            .unwrap_or(Value::Object(Map::new())),
        _ => return Err(("PARSE_ERROR", "the body must be a JSON object".into())),
    };
    let json = vexil_context(&context).map_err(|err| (err.code, err.details))?;
    Context::from_json(&json).map_err(|err| ("INVALID_CONTEXT", format!("context: {err}")))
}

/// OpenFeature's reason for a served value.
fn reason(evaluation: &Evaluation<'_>) -> &'static str {
    match evaluation.reason {
        Reason::TargetMatch | Reason::RuleMatch { .. } => "TARGETING_MATCH",
        Reason::Fallthrough if evaluation.in_experiment => "SPLIT",
        Reason::Fallthrough => "DEFAULT",
        Reason::Off | Reason::PrerequisiteFailed { .. } => "DISABLED",
        Reason::Error { .. } => "ERROR",
    }
}

/// Vexil's detail of an evaluation, as flag metadata (primitive values only).
/// (Nothing that changes when another flag changes: providers diff the metadata to tell
/// which flags changed.)
fn metadata(evaluation: &Evaluation<'_>) -> Value {
    let mut out = Map::new();
    let reason = &evaluation.reason;
    out.insert("vexilReason".into(), Value::from(reason.kind_or_error()));
    if let Some((index, id)) = reason.rule() {
        out.insert("ruleIndex".into(), Value::from(index));
        out.insert("ruleId".into(), Value::from(*id));
    }
    if let Some(key) = reason.prerequisite_key() {
        out.insert("prerequisiteKey".into(), Value::from(*key));
    }
    out.insert("inExperiment".into(), Value::from(evaluation.in_experiment));
    if let Some(experiment) = evaluation.experiment_key {
        out.insert("experimentKey".into(), Value::from(experiment));
    }
    out.insert("flagVersion".into(), Value::from(evaluation.flag_version));
    Value::Object(out)
}

/// One flag's result: a success, or a failure with its HTTP status (for the single-flag
/// endpoint; a bulk response lists failures as items).
fn flag_result(flag_key: &str, evaluation: &Evaluation<'_>) -> (StatusCode, Value) {
    if let Reason::Error { error_kind } = evaluation.reason {
        let (status, code, details) = match error_kind {
            ErrorKind::FlagNotFound => (
                StatusCode::NOT_FOUND,
                "FLAG_NOT_FOUND",
                format!("no flag `{flag_key}` for this SDK key"),
            ),
            ErrorKind::InvalidContext => (
                StatusCode::BAD_REQUEST,
                "INVALID_CONTEXT",
                "the context cannot be evaluated".to_owned(),
            ),
            ErrorKind::MalformedFlag => (
                StatusCode::BAD_REQUEST,
                "PARSE_ERROR",
                format!("flag `{flag_key}` cannot be evaluated: its configuration is malformed"),
            ),
            ErrorKind::WrongType | ErrorKind::ClientNotReady => (
                StatusCode::BAD_REQUEST,
                "GENERAL",
                format!("flag `{flag_key}`: {}", error_kind.as_str()),
            ),
        };
        return (
            status,
            json!({ "key": flag_key, "errorCode": code, "errorDetails": details }),
        );
    }
    let mut out = Map::new();
    out.insert("key".into(), Value::from(flag_key));
    if let Some(value) = evaluation.value {
        out.insert("value".into(), value.clone());
    }
    out.insert("reason".into(), Value::from(reason(evaluation)));
    if let Some(variation) = evaluation.variation {
        out.insert("variant".into(), Value::from(variation.to_string()));
    }
    out.insert("metadata".into(), metadata(evaluation));
    (StatusCode::OK, Value::Object(out))
}

impl Ofrep {
    /// The key of a request (`Authorization: Bearer …` or `X-API-Key`), checked for a page
    /// against its origin, and the key's environment.
    async fn environment(&self, headers: &HeaderMap) -> Result<(SdkKey, Arc<Environment>), Answer> {
        let header = |name| headers.get(name).and_then(|value| value.to_str().ok());
        let api_key = header("x-api-key").map(|key| format!("Bearer {}", key.trim()));
        let authorization = header(header::AUTHORIZATION.as_str())
            .map(str::to_owned)
            .or(api_key);
        let key = self
            .auth
            .authenticate_header(authorization.as_deref())
            .await
            .map_err(|status| Answer::refused(&status))?;
        if let Some(origin) = header(header::ORIGIN.as_str()) {
            self.auth
                .check_browser(&key, origin)
                .await
                .map_err(|status| Answer::refused(&status))?;
        }
        let environment = self
            .hub
            .environment(&key.project_key, &key.environment_key)
            .await
            .map_err(|err| Answer::refused(&crate::status::from_storage(err)))?;
        Ok((key, environment))
    }

    /// The key, its environment and the context of a request; a refusal names `flag_key`
    /// when there is one (the single-flag endpoint's failures carry it).
    async fn prepare(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        flag_key: Option<&str>,
    ) -> Result<(SdkKey, Arc<Environment>, RequestContext), Answer> {
        let (key, environment) = self.environment(headers).await?;
        let context = read_request(body).map_err(|(code, details)| {
            let mut failure = json!({ "errorCode": code, "errorDetails": details });
            if let Some(flag_key) = flag_key {
                failure["key"] = Value::from(flag_key);
            }
            Answer::json(StatusCode::BAD_REQUEST, Code::InvalidArgument, failure)
        })?;
        Ok((key, environment, RequestContext::Valid(context)))
    }

    async fn evaluate_flag(&self, flag_key: &str, headers: &HeaderMap, body: &[u8]) -> Answer {
        let (key, environment, context) = match self.prepare(headers, body, Some(flag_key)).await {
            Ok(prepared) => prepared,
            Err(answer) => return answer,
        };
        let held = environment.current();
        let view = KeyView::new(&held.ruleset, key.kind);
        let evaluation = view.evaluate(flag_key, &context, ValueKind::Json);
        self.hub
            .metrics()
            .count_evaluations(&environment.label, "OFREP.EvaluateFlag", 1);
        let (status, body) = flag_result(flag_key, &evaluation);
        let code = match status {
            StatusCode::OK => Code::Ok,
            StatusCode::NOT_FOUND => Code::NotFound,
            _ => Code::InvalidArgument,
        };
        Answer::json(status, code, body)
    }

    async fn evaluate_flags(&self, headers: &HeaderMap, body: &[u8]) -> Answer {
        let (key, environment, context) = match self.prepare(headers, body, None).await {
            Ok(prepared) => prepared,
            Err(answer) => return answer,
        };
        let held = environment.current();
        let view = KeyView::new(&held.ruleset, key.kind);
        let flags: Vec<Value> = view
            .visible_keys()
            .map(|flag_key| {
                let evaluation = view.evaluate(flag_key, &context, ValueKind::Json);
                flag_result(flag_key, &evaluation).1
            })
            .collect();
        self.hub.metrics().count_evaluations(
            &environment.label,
            "OFREP.EvaluateFlags",
            flags.len(),
        );
        // The ETag covers what the caller receives, not the environment version alone: the
        // results depend on the context and the key too, and date rules change with time.
        let body = json!({ "flags": flags, "metadata": { "environmentVersion": held.version } });
        let digest = Sha256::digest(body.to_string().as_bytes());
        let etag = format!("\"{}\"", hex::encode(&digest[..12]));
        Answer {
            status: StatusCode::OK,
            code: Code::Ok,
            body,
            etag: Some(etag),
        }
    }

    /// The HTTP response of `answer`, with the CORS headers for a page of an allowed origin.
    async fn respond(
        &self,
        rpc: &str,
        started: Instant,
        headers: &HeaderMap,
        answer: Answer,
    ) -> Response {
        self.hub
            .metrics()
            .observe_rpc(rpc, answer.code, started.elapsed().as_secs_f64());
        let not_modified = answer
            .etag
            .as_deref()
            .is_some_and(|etag| crate::http::none_match(headers, etag));
        let mut response = if not_modified {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            (
                answer.status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                answer.body.to_string(),
            )
                .into_response()
        };
        if let Some(etag) = answer
            .etag
            .and_then(|etag| HeaderValue::from_str(&etag).ok())
        {
            response.headers_mut().insert(header::ETAG, etag);
        }
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
            && self.auth.any_environment_allows(origin).await
        {
            browser::allow(response.headers_mut(), origin, EXPOSED_HEADERS);
        }
        response
    }
}

/// `POST /ofrep/v1/evaluate/flags/{key}`.
pub async fn evaluate_flag(
    State(ofrep): State<Ofrep>,
    Path(flag_key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let answer = ofrep.evaluate_flag(&flag_key, &headers, &body).await;
    ofrep
        .respond("OFREP.EvaluateFlag", started, &headers, answer)
        .await
}

/// `POST /ofrep/v1/evaluate/flags`.
pub async fn evaluate_flags(
    State(ofrep): State<Ofrep>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let answer = ofrep.evaluate_flags(&headers, &body).await;
    ofrep
        .respond("OFREP.EvaluateFlags", started, &headers, answer)
        .await
}

/// `OPTIONS` on the OFREP paths: the CORS preflight of a page, answered when some
/// environment allows its origin (the call itself is checked against its key's).
pub async fn preflight(State(ofrep): State<Ofrep>, headers: HeaderMap) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match origin {
        Some(origin)
            if browser::asks_for_post(&headers)
                && ofrep.auth.any_environment_allows(origin).await =>
        {
            let mut response = StatusCode::NO_CONTENT.into_response();
            browser::preflight_headers(
                response.headers_mut(),
                origin,
                ALLOWED_HEADERS,
                EXPOSED_HEADERS,
            );
            response
        }
        _ => StatusCode::FORBIDDEN.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_openfeature_context_becomes_a_vexil_context() {
        let single = vexil_context(&json!({
            "targetingKey": "u1", "email": "a@example.com", "plan": "pro"
        }))
        .unwrap();
        assert_eq!(
            single,
            json!({"kind": "user", "key": "u1",
                   "attributes": {"email": "a@example.com", "plan": "pro"}})
        );
        assert!(Context::from_json(&single).is_ok());
        let org = vexil_context(&json!({"targetingKey": "o1", "kind": "org"})).unwrap();
        assert_eq!(org, json!({"kind": "org", "key": "o1", "attributes": {}}));
        let multi = vexil_context(&json!({
            "kind": "multi",
            "user": {"targetingKey": "u1", "plan": "pro"},
            "org": {"targetingKey": "o1"}
        }))
        .unwrap();
        assert_eq!(
            multi,
            json!({"kind": "multi", "contexts": [
                {"kind": "org", "key": "o1", "attributes": {}},
                {"kind": "user", "key": "u1", "attributes": {"plan": "pro"}}
            ]})
        );
        assert!(Context::from_json(&multi).is_ok());
    }

    #[test]
    fn contexts_that_cannot_be_evaluated_are_named() {
        let missing = vexil_context(&json!({"email": "a@example.com"})).unwrap_err();
        assert_eq!(missing.code, "TARGETING_KEY_MISSING");
        assert_eq!(
            missing.details,
            "context.targetingKey: required, the context's key"
        );
        let number = vexil_context(&json!({"targetingKey": 7})).unwrap_err();
        assert_eq!(number.code, "INVALID_CONTEXT");
        let multi = vexil_context(&json!({"kind": "multi", "user": "u1"})).unwrap_err();
        assert!(
            multi.details.starts_with("context.user: "),
            "{}",
            multi.details
        );
        let nested = vexil_context(&json!({"kind": "multi", "org": {"name": "x"}})).unwrap_err();
        assert_eq!(nested.code, "TARGETING_KEY_MISSING");
        assert!(nested.details.starts_with("context.org.targetingKey"));
        assert_eq!(
            read_request(b"{\"context\": ").unwrap_err().0,
            "PARSE_ERROR"
        );
        assert_eq!(read_request(b"[]").unwrap_err().0, "PARSE_ERROR");
        assert_eq!(read_request(b"{}").unwrap_err().0, "TARGETING_KEY_MISSING");
    }
}
