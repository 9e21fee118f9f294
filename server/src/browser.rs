//! Calls from web pages on the gRPC port: CORS for the SDK-facing methods, and nothing else
//! for browsers.
//!
//! Browsers speak gRPC-web over HTTP/1.1 or HTTP/2 (tonic-web translates it, inside this
//! layer) and send an `Origin` header on every call. This layer:
//!
//! * lets requests without `Origin` (native gRPC clients) through untouched;
//! * answers CORS preflights (`OPTIONS`) for [`from_browsers`] methods when some
//!   environment allows the origin: a preflight carries no key, so the environment cannot
//!   be known yet (the call itself is then checked against its key's environment by
//!   [`crate::sdk_auth`], which also refuses server and mobile keys from pages);
//! * refuses, with 403 and no CORS headers, every page's request for any other method (the
//!   admin, sync and experiment APIs are not for browsers) and preflights for origins no
//!   environment allows, so the browser refuses the call before it is made;
//! * adds `Access-Control-Allow-Origin` and the exposed gRPC headers to the responses of
//!   allowed origins, so that the page can read the values and the error statuses.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use tonic::body::Body;

use crate::middleware::{BoxFuture, Intercept, InterceptLayer};
use crate::sdk_auth::SdkAuth;

/// The methods a web page may call.
pub fn from_browsers(path: &str) -> bool {
    path.starts_with("/vexil.v1.EvaluationService/") || path == "/vexil.v1.EventService/Publish"
}

/// The request headers gRPC-web clients send, which preflights allow.
const ALLOWED_HEADERS: &str = "authorization, content-type, x-grpc-web, x-user-agent, \
     grpc-timeout, grpc-encoding, grpc-accept-encoding";
/// The response headers a page must read: the status of a trailers-only response.
const EXPOSED_HEADERS: &str = "grpc-status, grpc-message, grpc-status-details-bin";
/// How long a browser may reuse a preflight's answer (Chromium caps it at two hours).
const PREFLIGHT_MAX_AGE_SECONDS: &str = "7200";

/// Puts [`BrowserCors`] around the gRPC routes.
pub type BrowserLayer = InterceptLayer<BrowserCors>;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct BrowserCors {
    auth: Arc<SdkAuth>,
}

impl BrowserCors {
    pub fn new(auth: Arc<SdkAuth>) -> BrowserCors {
        BrowserCors { auth }
    }
}

impl<S, B> Intercept<S, B> for BrowserCors
where
    S: tower::Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    fn intercept(&self, inner: &mut S, request: Request<B>) -> BoxFuture<Response<Body>, S::Error> {
        let Some(origin) = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
        else {
            return Box::pin(inner.call(request));
        };
        // The service that was made ready is the one to call; leave a fresh clone behind.
        let clone = inner.clone();
        let mut inner = std::mem::replace(inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            if !from_browsers(request.uri().path()) {
                return Ok(refused());
            }
            let allowed = auth.any_environment_allows(&origin).await;
            if request.method() == Method::OPTIONS {
                return Ok(if allowed && asks_for_post(request.headers()) {
                    preflight(&origin)
                } else {
                    refused()
                });
            }
            let mut response = inner.call(request).await?;
            if allowed {
                allow(response.headers_mut(), &origin, EXPOSED_HEADERS);
            }
            Ok(response)
        })
    }
}

/// Whether a preflight asks for a POST, the only method browsers are answered for.
pub fn asks_for_post(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .is_some_and(|method| method == "POST")
}

/// A refusal without CORS headers: the browser does not let the page see it.
fn refused() -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::FORBIDDEN;
    response
}

fn preflight(origin: &str) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    preflight_headers(
        response.headers_mut(),
        origin,
        ALLOWED_HEADERS,
        EXPOSED_HEADERS,
    );
    response
}

/// The headers of a positive answer to a preflight from `origin` for a POST.
pub fn preflight_headers(
    headers: &mut HeaderMap,
    origin: &str,
    allowed_headers: &'static str,
    exposed_headers: &'static str,
) {
    allow(headers, origin, exposed_headers);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(allowed_headers),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE_SECONDS),
    );
    headers.append(
        header::VARY,
        HeaderValue::from_static("access-control-request-method, access-control-request-headers"),
    );
}

/// The headers that let a page of `origin` read a response and `exposed_headers`.
pub fn allow(headers: &mut HeaderMap, origin: &str, exposed_headers: &'static str) {
    // The origin was read from a header value, so it is one.
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(exposed_headers),
    );
    // The answer depends on the origin: caches must not give it to another.
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}
