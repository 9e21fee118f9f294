//! Any request to the HTTP endpoints SDKs and OpenFeature providers call (the ruleset
//! snapshot and OFREP), with a credential chosen among the valid ones and fuzzed text, and any
//! path, headers and body: every request gets an answer, never a server error (5xx).
#![no_main]

use axum::body::Body;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;
use vexil_fuzz::served;

#[derive(Debug, Arbitrary)]
enum Path {
    Snapshot,
    EvaluateAll,
    EvaluateOne(String),
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Credential {
    ServerKey,
    ClientKey,
    Text(String),
    None,
}

#[derive(Debug, Arbitrary)]
struct Input {
    post: bool,
    preflight: bool,
    path: Path,
    credential: Credential,
    headers: Vec<(u8, String)>,
    body: Vec<u8>,
}

/// Headers the endpoints read, picked by the input's byte.
const HEADERS: [&str; 7] = [
    "if-none-match",
    "accept-encoding",
    "origin",
    "content-type",
    "access-control-request-method",
    "access-control-request-headers",
    "x-api-key",
];

fuzz_target!(|input: Input| {
    let s = served();
    let path = match &input.path {
        Path::Snapshot => "/v1/snapshot".to_owned(),
        Path::EvaluateAll => "/ofrep/v1/evaluate/flags".to_owned(),
        Path::EvaluateOne(key) => format!("/ofrep/v1/evaluate/flags/{key}"),
        Path::Other(path) => path.clone(),
    };
    let method = if input.preflight {
        http::Method::OPTIONS
    } else if input.post {
        http::Method::POST
    } else {
        http::Method::GET
    };
    let mut request = http::Request::builder().method(method);
    match &input.credential {
        Credential::ServerKey => {
            request = request.header("authorization", format!("Bearer {}", s.server_key))
        }
        Credential::ClientKey => {
            request = request.header("authorization", format!("Bearer {}", s.client_key))
        }
        Credential::Text(text) => request = request.header("authorization", text.as_str()),
        Credential::None => {}
    }
    for (pick, value) in &input.headers {
        request = request.header(HEADERS[usize::from(*pick) % HEADERS.len()], value.as_str());
    }
    // A URI or header the HTTP layer itself would refuse never reaches the router.
    let Ok(request) = request.uri(path).body(Body::from(input.body.clone())) else {
        return;
    };
    let response = s
        .runtime
        .block_on(s.http.clone().oneshot(request))
        .expect("the router is infallible");
    assert!(
        !response.status().is_server_error(),
        "{input:?}: {}",
        response.status()
    );
});
