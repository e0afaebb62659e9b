//! The operators' routes: `GET /metrics`, the Prometheus scrape (later, notify's operations).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::Response;

use super::router::{AdminRequest, RouteFuture};
use super::AdminContext;
use crate::server::State;

/// `GET /metrics`: every counter, with the queue depth and the events pipeline's counters
/// read now, in the OpenMetrics text format.
pub(super) fn metrics(_request: AdminRequest, admin: Arc<AdminContext<State>>) -> RouteFuture {
    let shared = admin.site().shared();
    let snapshot = shared.pipeline.as_ref().map(|p| p.snapshot());
    let body = shared
        .metrics
        .encode(shared.events.depth(), snapshot.as_ref());
    let mut answer = Response::new(Full::new(Bytes::from(body)));
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Box::pin(std::future::ready(Ok(answer)))
}
