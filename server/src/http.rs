//! The HTTP side of an instance (its own port): the L3 snapshot endpoint that a CDN can
//! cache, OFREP, and the operational endpoints.
//!
//! * `GET /v1/snapshot` with `Authorization: Bearer <server SDK key>`: the environment's
//!   ruleset JSON (`{"version", "flags", "segments"}`), `ETag: "<version>"`, `304 Not
//!   Modified` for a matching `If-None-Match`, gzip when accepted. `Cache-Control: public,
//!   max-age=0, must-revalidate, stale-if-error=86400`: a CDN keeps it, revalidates each
//!   request with the ETag (a 304 costs the instance no serialization), and may serve the
//!   last copy for a day if every instance is down. The response varies by
//!   `Authorization` and `Accept-Encoding`. Client and mobile keys are refused (403):
//!   rules never reach them.
//! * `POST /ofrep/v1/evaluate/flags[/{key}]`: the OpenFeature Remote Evaluation Protocol,
//!   for SDK keys of every kind (see [`crate::ofrep`]).
//! * `GET /healthz`: 200 while the process serves.
//! * `GET /readyz`: 200 once every environment was loaded into memory, else 503.
//! * `GET /metrics`: Prometheus text format.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::live::Hub;
use crate::ofrep::{self, Ofrep};
use crate::sdk_auth::{SdkAuth, require_server_key};
use crate::status::from_storage;

const SNAPSHOT_CACHE_CONTROL: &str = "public, max-age=0, must-revalidate, stale-if-error=86400";

#[derive(Debug, Clone)]
struct HttpState {
    hub: Hub,
    auth: Arc<SdkAuth>,
}

/// The router of the HTTP endpoints.
pub fn router(hub: Hub, auth: Arc<SdkAuth>) -> Router {
    let ofrep = Router::new()
        .route(
            "/ofrep/v1/evaluate/flags",
            post(ofrep::evaluate_flags).options(ofrep::preflight),
        )
        .route(
            "/ofrep/v1/evaluate/flags/{key}",
            post(ofrep::evaluate_flag).options(ofrep::preflight),
        )
        .with_state(Ofrep {
            hub: hub.clone(),
            auth: auth.clone(),
        });
    Router::new()
        .route("/v1/snapshot", get(snapshot))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(HttpState { hub, auth })
        .merge(ofrep)
}

/// Serves the HTTP endpoints on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    auth: Arc<SdkAuth>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(address = %address, "serving http (snapshot, OFREP, health, metrics)");
    }
    // Without TCP_NODELAY a large snapshot's last segment can wait for a delayed ACK.
    let listener = listener.tap_io(|stream| {
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router(hub, auth))
        .with_graceful_shutdown(shutdown)
        .await
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn grpc_error(status: &tonic::Status) -> Response {
    let code = match status.code() {
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(code, status.message())
}

/// Whether an `If-None-Match` header names `etag` (or is `*`). Weak validators match too:
/// the body of a version never changes.
pub(crate) fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|p| {
                let p = p.trim();
                p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

async fn snapshot(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let key = match state.auth.authenticate_header(authorization).await {
        Ok(key) => key,
        Err(status) => return grpc_error(&status),
    };
    if let Err(status) = require_server_key(&key, "the snapshot") {
        return grpc_error(&status);
    }
    let environment = match state
        .hub
        .environment(&key.project_key, &key.environment_key)
        .await
    {
        Ok(environment) => environment,
        Err(err) => return grpc_error(&from_storage(err)),
    };
    let held = environment.current();
    let etag = format!("\"{}\"", held.version);
    let etag_value = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\""));
    let common = [
        (header::ETAG, etag_value),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(SNAPSHOT_CACHE_CONTROL),
        ),
        (
            header::VARY,
            HeaderValue::from_static("Authorization, Accept-Encoding"),
        ),
    ];
    let matched = none_match(&headers, &etag);
    state.hub.metrics().cache("l3", matched);
    if matched {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    let json = held.json();
    let content_type = (
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if accepts_gzip(&headers) {
        (
            StatusCode::OK,
            common,
            [
                content_type,
                (header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
            ],
            json.gzip.clone(),
        )
            .into_response()
    } else {
        (StatusCode::OK, common, [content_type], json.text.clone()).into_response()
    }
}

async fn readyz(State(state): State<HttpState>) -> Response {
    if state.hub.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "loading rulesets\n").into_response()
    }
}

async fn metrics(State(state): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.hub.metrics().render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, value: &'static str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(name, HeaderValue::from_static(value));
        map
    }

    #[test]
    fn if_none_match_reads_lists_weak_tags_and_star() {
        assert!(none_match(
            &headers(header::IF_NONE_MATCH, "\"7\""),
            "\"7\""
        ));
        assert!(none_match(
            &headers(header::IF_NONE_MATCH, "\"6\", W/\"7\""),
            "\"7\""
        ));
        assert!(none_match(&headers(header::IF_NONE_MATCH, "*"), "\"7\""));
        assert!(!none_match(
            &headers(header::IF_NONE_MATCH, "\"70\""),
            "\"7\""
        ));
        assert!(!none_match(&HeaderMap::new(), "\"7\""));
    }

    #[test]
    fn gzip_is_used_only_when_accepted() {
        assert!(accepts_gzip(&headers(header::ACCEPT_ENCODING, "br, gzip")));
        assert!(accepts_gzip(&headers(
            header::ACCEPT_ENCODING,
            "gzip;q=0.5"
        )));
        assert!(!accepts_gzip(&headers(header::ACCEPT_ENCODING, "gzip;q=0")));
        assert!(!accepts_gzip(&headers(header::ACCEPT_ENCODING, "identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
