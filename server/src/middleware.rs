//! What the server's own HTTP layers around the gRPC routes share: the tower plumbing.
//! Each layer says only what it does with one call, as an [`Intercept`]; [`InterceptLayer`]
//! and [`Intercepted`] make it a tower layer and service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::body::Body;

/// The future of an intercepted call.
pub type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// What a layer does with one call of the service `S` it wraps.
pub trait Intercept<S, B>: Clone
where
    S: tower::Service<Request<B>, Response = Response<Body>>,
{
    /// Answers `request`, through `inner` (made ready) or on its own.
    fn intercept(&self, inner: &mut S, request: Request<B>) -> BoxFuture<Response<Body>, S::Error>;
}

/// Puts an [`Intercept`] around a service.
#[derive(Debug, Clone)]
pub struct InterceptLayer<I> {
    intercept: I,
}

impl<I> InterceptLayer<I> {
    pub fn new(intercept: I) -> InterceptLayer<I> {
        InterceptLayer { intercept }
    }
}

impl<S, I: Clone> tower::Layer<S> for InterceptLayer<I> {
    type Service = Intercepted<S, I>;

    fn layer(&self, inner: S) -> Intercepted<S, I> {
        Intercepted {
            inner,
            intercept: self.intercept.clone(),
        }
    }
}

/// A service whose calls go through an [`Intercept`].
#[derive(Debug, Clone)]
pub struct Intercepted<S, I> {
    inner: S,
    intercept: I,
}

impl<S, B, I> tower::Service<Request<B>> for Intercepted<S, I>
where
    S: tower::Service<Request<B>, Response = Response<Body>>,
    I: Intercept<S, B>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Response<Body>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.intercept.intercept(&mut self.inner, request)
    }
}
