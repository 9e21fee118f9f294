//! OFREP on the HTTP port, as the protocol's providers call it: single and bulk evaluation,
//! keys, contexts, errors, ETags and CORS. (The published providers themselves run against a
//! server in the web SDK's and the Python SDK's suites.)

use vexil_testing::{HttpResponse, ServerOptions, TestDatabase, http_request};

use super::*;

const FLAGS: &str = "/ofrep/v1/evaluate/flags";
/// The origin of a page served from this machine.
const PAGE: &str = "http://localhost:3000";

async fn ofrep_server() -> TestServer {
    let server = TestServer::start(
        TestDatabase::sqlite(),
        ServerOptions {
            http: true,
            ..ServerOptions::default()
        },
    )
    .await;
    server
        .import_ruleset(json!({
        "flags": [
            {"key": "checkout", "kind": "bool", "variations": [false, true], "on": true,
             "off_variation": 0, "client_side": true, "fallthrough": {"variation": 1},
             "rules": [{"id": "bob", "clauses": [{"attribute": "key", "op": "in", "values": ["bob"]}],
                        "serve": {"variation": 0}}]},
            {"key": "banner", "kind": "string", "variations": ["blue", "green"], "on": false,
             "off_variation": 1, "client_side": true, "fallthrough": {"variation": 0}},
            {"key": "limits", "kind": "json", "variations": [{"max": 5}], "on": true,
             "client_side": true, "fallthrough": {"variation": 0}},
            {"key": "dark", "kind": "bool", "variations": [false, true], "on": false,
             "client_side": true, "fallthrough": {"variation": 1}},
            {"key": "org-plan", "kind": "string", "variations": ["free", "team"], "on": true,
             "off_variation": 0, "fallthrough": {"variation": 0},
             "rules": [{"id": "big", "clauses": [{"context_kind": "org", "attribute": "seats",
                        "op": "gt", "values": [100]}], "serve": {"variation": 1}}]}
        ],
        "segments": []
        }))
        .await;
    server
}

async fn post(
    server: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> (HttpResponse, Value) {
    let mut all = vec![("content-type", "application/json; charset=utf-8")];
    all.extend_from_slice(headers);
    let response = http_request(
        server.http.unwrap(),
        "POST",
        path,
        &all,
        body.to_string().as_bytes(),
    )
    .await;
    let json = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response, json)
}

/// A single evaluation's value and reason, as a pair.
fn value_and_reason(body: &Value) -> Value {
    json!([body["value"], body["reason"]])
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

#[tokio::test]
async fn single_flags_are_evaluated_with_openfeature_reasons_and_errors() {
    let server = ofrep_server().await;
    let key = server.sdk_key(ENV, "server");
    let auth = bearer(&key);
    let headers = [("authorization", auth.as_str())];
    let alice = json!({"context": {"targetingKey": "alice", "plan": "pro"}});
    let path = |flag: &str| format!("{FLAGS}/{flag}");

    let (response, body) = eventually_ready(&server, &headers).await;
    assert_eq!(response.status, 200, "{body}");
    let (response, body) = post(&server, &path("checkout"), &headers, &alice).await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(body["key"], "checkout");
    assert_eq!(body["value"], true);
    assert_eq!(body["reason"], "DEFAULT");
    assert_eq!(body["variant"], "1");
    assert_eq!(body["metadata"]["vexilReason"], "FALLTHROUGH");
    assert!(body["metadata"]["flagVersion"].as_u64().unwrap() >= 1);

    let bob = json!({"context": {"targetingKey": "bob"}});
    let (_, body) = post(&server, &path("checkout"), &headers, &bob).await;
    assert_eq!(
        (&body["value"], &body["reason"], &body["variant"]),
        (&json!(false), &json!("TARGETING_MATCH"), &json!("0"))
    );
    assert_eq!(body["metadata"]["ruleId"], "bob");
    assert_eq!(body["metadata"]["ruleIndex"], 0);

    // Off: DISABLED with the off variation; off without one: no value (the caller's default).
    let (_, body) = post(&server, &path("banner"), &headers, &alice).await;
    assert_eq!(value_and_reason(&body), json!(["green", "DISABLED"]));
    let (response, body) = post(&server, &path("dark"), &headers, &alice).await;
    assert_eq!(response.status, 200);
    assert_eq!(body["reason"], "DISABLED");
    assert!(body.get("value").is_none(), "{body}");
    let (_, body) = post(&server, &path("limits"), &headers, &alice).await;
    assert_eq!(body["value"], json!({"max": 5}));

    // A multi-kind context by the documented convention.
    let org = json!({"context": {"kind": "multi",
        "user": {"targetingKey": "alice"}, "org": {"targetingKey": "acme", "seats": 500}}});
    let (_, body) = post(&server, &path("org-plan"), &headers, &org).await;
    assert_eq!(value_and_reason(&body), json!(["team", "TARGETING_MATCH"]));

    // Errors, with the protocol's status codes and bodies.
    let (response, body) = post(&server, &path("nope"), &headers, &alice).await;
    assert_eq!(response.status, 404);
    assert_eq!(
        (&body["key"], &body["errorCode"]),
        (&json!("nope"), &json!("FLAG_NOT_FOUND"))
    );
    let (response, body) = post(
        &server,
        &path("checkout"),
        &headers,
        &json!({"context": {"plan": "x"}}),
    )
    .await;
    assert_eq!(response.status, 400);
    assert_eq!(body["errorCode"], "TARGETING_KEY_MISSING");
    assert_eq!(
        body["errorDetails"],
        "context.targetingKey: required, the context's key"
    );
    let bad = http_request(
        server.http.unwrap(),
        "POST",
        &path("checkout"),
        &[("authorization", auth.as_str())],
        b"{\"context\":",
    )
    .await;
    assert_eq!(bad.status, 400);
    let body: Value = serde_json::from_slice(&bad.body).unwrap();
    assert_eq!(body["errorCode"], "PARSE_ERROR");
    let (response, body) = post(
        &server,
        &path("checkout"),
        &headers,
        &json!({"context": {"targetingKey": "a", "kind": "not a kind!"}}),
    )
    .await;
    assert_eq!(response.status, 400);
    assert_eq!(body["errorCode"], "INVALID_CONTEXT", "{body}");

    // Keys: none, unknown, an admin token; X-API-Key works like Authorization.
    let (response, _) = post(&server, &path("checkout"), &[], &alice).await;
    assert_eq!(response.status, 401);
    let (response, _) = post(
        &server,
        &path("checkout"),
        &[("authorization", "Bearer vxl-server-nope")],
        &alice,
    )
    .await;
    assert_eq!(response.status, 401);
    let api_key = [("x-api-key", key.as_str())];
    let (response, body) = post(&server, &path("checkout"), &api_key, &alice).await;
    assert_eq!((response.status, &body["value"]), (200, &json!(true)));

    // A client key sees client-side flags only; the others do not exist for it.
    let client = bearer(&server.sdk_key(ENV, "client"));
    let client_headers = [("authorization", client.as_str())];
    let (response, body) = post(&server, &path("org-plan"), &client_headers, &org).await;
    assert_eq!(
        (response.status, &body["errorCode"]),
        (404, &json!("FLAG_NOT_FOUND"))
    );

    let metered = server
        .metric("vexil_evaluations_total{environment=\"default/production\",rpc=\"OFREP.EvaluateFlag\"}")
        .await;
    // Each request that got as far as an evaluation, refused flags included; not those
    // refused before (keys, bodies, contexts).
    assert_eq!(metered, 9.0);
    server.stop().await;
}

/// The bulk answer once the imported flags are served.
async fn eventually_ready(server: &TestServer, headers: &[(&str, &str)]) -> (HttpResponse, Value) {
    let alice = json!({"context": {"targetingKey": "alice"}});
    let started = Instant::now();
    loop {
        let (response, body) = post(server, FLAGS, headers, &alice).await;
        if body["flags"].as_array().is_some_and(|f| f.len() == 5) || started.elapsed() > WAIT {
            return (response, body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn bulk_evaluation_lists_what_the_key_sees_with_an_etag_of_the_results() {
    let server = ofrep_server().await;
    let server_key = bearer(&server.sdk_key(ENV, "server"));
    eventually_ready(&server, &[("authorization", server_key.as_str())]).await;
    let client = bearer(&server.sdk_key(ENV, "client"));
    let headers = [("authorization", client.as_str())];
    let alice = json!({"context": {"targetingKey": "alice"}});
    let (response, body) = post(&server, FLAGS, &headers, &alice).await;
    assert_eq!(response.status, 200);
    let keys: Vec<&str> = body["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["banner", "checkout", "dark", "limits"],
        "client-side flags only"
    );
    assert!(body["metadata"]["environmentVersion"].as_i64().unwrap() > 0);
    let etag = response.header("etag").expect("an etag").to_owned();
    let conditional = [headers[0], ("if-none-match", etag.as_str())];

    // The same results: 304 with no body; another context's results differ: 200.
    let (again, _) = post(&server, FLAGS, &conditional, &alice).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let bob = json!({"context": {"targetingKey": "bob"}});
    let (other, _) = post(&server, FLAGS, &conditional, &bob).await;
    assert_eq!(other.status, 200);
    assert_ne!(other.header("etag"), Some(etag.as_str()));

    // A change the caller would see gives new results and a new ETag.
    server.toggle("checkout", false).await;
    let started = Instant::now();
    loop {
        let (changed, body) = post(&server, FLAGS, &conditional, &alice).await;
        if changed.status == 200 {
            let checkout = body["flags"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["key"] == "checkout")
                .unwrap()
                .clone();
            assert_eq!(checkout["reason"], "DISABLED");
            break;
        }
        assert!(started.elapsed() < WAIT, "the change never showed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (response, body) = post(&server, FLAGS, &headers, &json!({"context": {}})).await;
    assert_eq!(response.status, 400);
    assert_eq!(body["errorCode"], "TARGETING_KEY_MISSING");
    server.stop().await;
}

async fn preflight(addr: std::net::SocketAddr, origin: &str) -> HttpResponse {
    http_request(
        addr,
        "OPTIONS",
        FLAGS,
        &[
            ("origin", origin),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type,if-none-match,authorization",
            ),
        ],
        &[],
    )
    .await
}

/// A bulk evaluation from [`PAGE`] with the `kind` SDK key of `ENV`.
async fn post_from_page(server: &TestServer, kind: &str, body: &Value) -> (HttpResponse, Value) {
    let auth = bearer(&server.sdk_key(ENV, kind));
    let headers = [("authorization", auth.as_str()), ("origin", PAGE)];
    post(server, FLAGS, &headers, body).await
}

#[tokio::test]
async fn pages_get_the_cors_of_their_environment() {
    let server = ofrep_server().await;
    let addr = server.http.unwrap();
    let answer = preflight(addr, PAGE).await;
    assert_eq!(answer.status, 204);
    assert_eq!(answer.header("access-control-allow-origin"), Some(PAGE));
    assert_allows_headers(
        &answer,
        &[
            "authorization",
            "content-type",
            "if-none-match",
            "x-api-key",
        ],
    );
    assert_eq!(preflight(addr, "https://evil.example").await.status, 403);

    let alice = json!({"context": {"targetingKey": "alice"}});
    let (response, _) = post_from_page(&server, "client", &alice).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("access-control-allow-origin"), Some(PAGE));
    assert_eq!(
        response.header("access-control-expose-headers"),
        Some("etag")
    );
    let (response, body) = post_from_page(&server, "server", &alice).await;
    assert_eq!(response.status, 403);
    assert!(
        body["errorDetails"]
            .as_str()
            .unwrap()
            .contains("client SDK key"),
        "{body}"
    );
    server.stop().await;
}
