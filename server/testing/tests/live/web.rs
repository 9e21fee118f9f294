//! Web pages on the gRPC port: gRPC-web over HTTP/1.1, CORS preflights, the allowed origins
//! of each environment, and what pages may not call. Requests are written by hand here, as
//! a browser sends them; the browser SDK's tests do the same from a real Chromium.

use std::net::SocketAddr;

use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vexil_testing::{HttpResponse, http_request};

use super::*;

const EVALUATE_ALL: &str = "/vexil.v1.EvaluationService/EvaluateAll";
const WATCH: &str = "/vexil.v1.EvaluationService/Watch";
const LOCAL_PAGE: &str = "http://localhost:5173";
const APP_PAGE: &str = "https://app.example.com";

/// A gRPC-web frame: flags (0x80 for trailers), length, payload.
fn frame(message: &impl Message) -> Vec<u8> {
    let payload = message.encode_to_vec();
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

/// The frames of a gRPC-web body: (is trailers, payload).
fn frames(mut body: &[u8]) -> Vec<(bool, Vec<u8>)> {
    let mut out = Vec::new();
    while body.len() >= 5 {
        let length = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        out.push((body[0] & 0x80 != 0, body[5..5 + length].to_vec()));
        body = &body[5 + length..];
    }
    out
}

/// A `grpc-message`, which gRPC percent-encodes.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The gRPC status of a response: from its headers (trailers-only) or its trailer frame.
fn grpc_status(response: &HttpResponse) -> (String, String) {
    if let Some(status) = response.header("grpc-status") {
        let message = response.header("grpc-message").unwrap_or_default();
        return (status.to_owned(), percent_decoded(message));
    }
    let trailers = frames(&response.body)
        .into_iter()
        .find(|(trailers, _)| *trailers)
        .map(|(_, payload)| String::from_utf8(payload).unwrap())
        .expect("a trailer frame");
    let field = |name: &str| {
        trailers
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| percent_decoded(v.trim()))
            .unwrap_or_default()
    };
    (field("grpc-status"), field("grpc-message"))
}

async fn preflight(addr: SocketAddr, path: &str, origin: &str) -> HttpResponse {
    http_request(
        addr,
        "OPTIONS",
        path,
        &[
            ("origin", origin),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization,content-type,x-grpc-web,x-user-agent",
            ),
        ],
        &[],
    )
    .await
}

async fn grpc_web(
    addr: SocketAddr,
    path: &str,
    origin: Option<&str>,
    key: &str,
    body: &[u8],
) -> HttpResponse {
    let authorization = format!("Bearer {key}");
    let mut headers = vec![
        ("content-type", "application/grpc-web+proto"),
        ("x-grpc-web", "1"),
        ("authorization", authorization.as_str()),
    ];
    if let Some(origin) = origin {
        headers.push(("origin", origin));
    }
    http_request(addr, "POST", path, &headers, body).await
}

fn evaluate_all() -> Vec<u8> {
    frame(&pb::EvaluateAllRequest {
        context: Some(user("web-user", json!({}))),
        flag_keys: vec![],
    })
}

fn flag_keys(response: &HttpResponse) -> Vec<String> {
    let (_, payload) = frames(&response.body)
        .into_iter()
        .find(|(trailers, _)| !trailers)
        .expect("a message frame");
    let reply = pb::EvaluateAllResponse::decode(payload.as_slice()).unwrap();
    reply.results.into_iter().map(|r| r.flag_key).collect()
}

/// Waits until the server serves `count` flags (admin writes reach the live rulesets
/// asynchronously).
async fn wait_for_flags(server: &TestServer, count: usize) {
    let key = server.sdk_key(ENV, "server");
    let started = Instant::now();
    loop {
        let reply = grpc_web(server.addr, EVALUATE_ALL, None, &key, &evaluate_all()).await;
        if flag_keys(&reply).len() == count {
            return;
        }
        assert!(
            started.elapsed() < WAIT,
            "the flags never reached the live ruleset"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn set_origins(
    server: &TestServer,
    env: &str,
    origins: &[&str],
) -> Result<(), tonic::Status> {
    let mut admin = server.admin().await;
    let current = admin
        .get_environment(authed(
            pb::GetEnvironmentRequest {
                project_key: PROJECT.into(),
                key: env.into(),
            },
            &server.root_token(),
        ))
        .await?
        .into_inner();
    admin
        .update_environment(authed(
            pb::UpdateEnvironmentRequest {
                project_key: PROJECT.into(),
                key: env.into(),
                expected_version: current.version,
                name: current.name,
                description: current.description,
                allowed_origins: Some(pb::AllowedOrigins {
                    origins: origins.iter().map(|o| (*o).to_owned()).collect(),
                }),
                event_retention_days: None,
            },
            &server.root_token(),
        ))
        .await
        .map(drop)
}

#[tokio::test]
async fn pages_call_the_sdk_methods_with_client_keys_from_allowed_origins() {
    let server = TestServer::sqlite().await;
    server.create_bool_flag("for-pages", true).await;
    server.create_bool_flag("server-only", false).await;
    wait_for_flags(&server, 2).await;
    // Origins are set before any page calls, so no instance remembers the old ones.
    let refused = set_origins(&server, ENV, &["app.example.com"])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused
            .message()
            .starts_with("allowed_origins.origins[0]: `app.example.com`"),
        "{}",
        refused.message()
    );
    set_origins(&server, ENV, &[APP_PAGE, "https://*.preview.example.com"])
        .await
        .unwrap();
    let stored = server.storage.get_environment(PROJECT, ENV).await.unwrap();
    assert_eq!(
        stored.allowed_origins,
        [APP_PAGE, "https://*.preview.example.com"]
    );

    // Preflights: allowed origins of some environment (development keeps the default,
    // this machine's pages) get the CORS answer; others get none.
    for origin in [LOCAL_PAGE, APP_PAGE, "https://pr-7.preview.example.com"] {
        let answer = preflight(server.addr, EVALUATE_ALL, origin).await;
        assert_eq!(answer.status, 204, "{origin}");
        assert_eq!(answer.header("access-control-allow-origin"), Some(origin));
        assert_eq!(answer.header("access-control-allow-methods"), Some("POST"));
        assert_allows_headers(
            &answer,
            &[
                "authorization",
                "content-type",
                "x-grpc-web",
                "x-user-agent",
            ],
        );
    }
    let answer = preflight(server.addr, EVALUATE_ALL, "https://evil.example").await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.header("access-control-allow-origin"), None);
    // Only the SDK-facing methods are for pages.
    for path in [
        "/vexil.v1.AdminService/ListProjects",
        "/vexil.v1.SyncService/GetRuleset",
        "/vexil.v1.EventService/Publish",
    ] {
        let answer = preflight(server.addr, path, LOCAL_PAGE).await;
        let expected = if path.ends_with("Publish") { 204 } else { 403 };
        assert_eq!(answer.status, expected, "{path}");
    }

    // A client key from an allowed page: the client-side flags, over HTTP/1.1.
    let client = server.sdk_key(ENV, "client");
    let reply = grpc_web(
        server.addr,
        EVALUATE_ALL,
        Some(APP_PAGE),
        &client,
        &evaluate_all(),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(grpc_status(&reply).0, "0", "{:?}", grpc_status(&reply));
    assert_eq!(reply.header("access-control-allow-origin"), Some(APP_PAGE));
    assert!(
        reply
            .header("access-control-expose-headers")
            .is_some_and(|h| h.contains("grpc-status") && h.contains("grpc-message"))
    );
    assert_eq!(flag_keys(&reply), ["for-pages"]);

    // PERMISSION_DENIED: the same key from a page the environment does not allow, though
    // development does; and server and mobile keys from any page, whatever its origin.
    let refusals = [
        (LOCAL_PAGE, client, "not allowed"),
        (APP_PAGE, server.sdk_key(ENV, "server"), "client SDK key"),
        (APP_PAGE, server.sdk_key(ENV, "mobile"), "client SDK key"),
    ];
    for (origin, key, reason) in refusals {
        let reply = grpc_web(
            server.addr,
            EVALUATE_ALL,
            Some(origin),
            &key,
            &evaluate_all(),
        )
        .await;
        let (status, message) = grpc_status(&reply);
        assert_eq!(status, "7", "{key} from {origin}: {message}");
        assert!(message.contains(reason), "{message}");
    }
    // A page may not call the admin API, even with a valid token.
    let token = server.root_token();
    let reply = grpc_web(
        server.addr,
        "/vexil.v1.AdminService/ListProjects",
        Some(LOCAL_PAGE),
        &token,
        &frame(&pb::ListProjectsRequest::default()),
    )
    .await;
    assert_eq!(reply.status, 403);
    // gRPC-web without an origin (a native gRPC-web client) is not a page: a server key works.
    let key = server.sdk_key(ENV, "server");
    let reply = grpc_web(server.addr, EVALUATE_ALL, None, &key, &evaluate_all()).await;
    assert_eq!(grpc_status(&reply).0, "0");
    assert_eq!(flag_keys(&reply), ["for-pages", "server-only"]);
    server.stop().await;
}

/// A Watch over gRPC-web on HTTP/1.1: the first values, then a change, as a browser reads
/// them from a chunked response that never ends.
#[tokio::test]
async fn watch_streams_over_grpc_web_on_http1() {
    let server = TestServer::sqlite().await;
    server.create_bool_flag("banner", true).await;
    wait_for_flags(&server, 1).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let body = frame(&pb::WatchRequest {
        context: Some(user("watcher", json!({}))),
        flag_keys: vec![],
        version: 0,
    });
    let head = format!(
        "POST {WATCH} HTTP/1.1\r\nHost: {}\r\ncontent-type: application/grpc-web+proto\r\n\
         x-grpc-web: 1\r\norigin: {LOCAL_PAGE}\r\nauthorization: Bearer {}\r\n\
         content-length: {}\r\n\r\n",
        server.addr,
        server.sdk_key(ENV, "client"),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();

    let mut reader = ChunkedFrames::default();
    let first = reader.next_message(&mut stream).await;
    let first = pb::WatchResponse::decode(first.as_slice()).unwrap();
    let Some(pb::watch_response::Event::Values(values)) = first.event else {
        panic!("values first: {first:?}");
    };
    assert_eq!(values.results.len(), 1);
    assert_eq!(values.results[0].flag_key, "banner");
    assert!(
        reader
            .head
            .contains("access-control-allow-origin: http://localhost:5173")
    );

    server.toggle("banner", true).await;
    let changed = tokio::time::timeout(WAIT, async {
        loop {
            let message = reader.next_message(&mut stream).await;
            let message = pb::WatchResponse::decode(message.as_slice()).unwrap();
            if let Some(pb::watch_response::Event::Changes(changes)) = message.event {
                return changes;
            }
        }
    })
    .await
    .expect("a change within the wait");
    assert_eq!(changed.updated[0].flag_key, "banner");
    assert_eq!(
        changed.updated[0].value.as_ref().map(value_to_json),
        Some(json!(true))
    );
    drop(stream);
    server.stop().await;
}

/// Reads the message frames of a chunked gRPC-web response as they arrive.
#[derive(Default)]
struct ChunkedFrames {
    /// The response head, lower case, once read.
    head: String,
    raw: Vec<u8>,
    /// De-chunked body bytes not yet returned as frames.
    body: Vec<u8>,
}

impl ChunkedFrames {
    async fn next_message(&mut self, stream: &mut tokio::net::TcpStream) -> Vec<u8> {
        loop {
            self.parse();
            if self.body.len() >= 5 {
                let length = u32::from_be_bytes(self.body[1..5].try_into().unwrap()) as usize;
                if self.body.len() >= 5 + length {
                    let frame: Vec<u8> = self.body.drain(..5 + length).collect();
                    assert_eq!(frame[0] & 0x80, 0, "the stream ended");
                    return frame[5..].to_vec();
                }
            }
            let mut buffer = [0u8; 4096];
            let read = tokio::time::timeout(WAIT, stream.read(&mut buffer))
                .await
                .expect("the stream went silent")
                .unwrap();
            assert!(read > 0, "the server closed the stream");
            self.raw.extend_from_slice(&buffer[..read]);
        }
    }

    /// Moves complete chunks from `raw` to `body`.
    fn parse(&mut self) {
        if self.head.is_empty() {
            let Some(end) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            self.head = String::from_utf8_lossy(&self.raw[..end]).to_ascii_lowercase();
            assert!(self.head.starts_with("http/1.1 200"), "{}", self.head);
            assert!(
                self.head.contains("transfer-encoding: chunked"),
                "{}",
                self.head
            );
            self.raw.drain(..end + 4);
        }
        loop {
            let Some(line) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size = usize::from_str_radix(String::from_utf8_lossy(&self.raw[..line]).trim(), 16)
                .expect("a chunk size");
            if self.raw.len() < line + 2 + size + 2 {
                return;
            }
            self.body
                .extend_from_slice(&self.raw[line + 2..line + 2 + size]);
            self.raw.drain(..line + 2 + size + 2);
        }
    }
}
