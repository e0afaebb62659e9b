//! The rewrite API, `/v1/…` on the admin listener: what `mailtrack rewrite`, `sign` and
//! `pixel` do, over HTTP with JSON, for senders in any language. Each answer holds the
//! result and the report the CLI writes; bad input gets a 4xx whose `error` names what was
//! wrong (the field, the MIME part) and why.
//!
//! Rewriting is CPU work of a millisecond or so per message (more for a large MIME
//! message), so it runs on tokio's blocking pool, and never holds up the runtime's workers
//! that the public listeners share.
//!
//! # Layout
//!
//! - `request`: the fields every route takes (message id, send time, message tags).
//! - `html`: `POST /v1/rewrite/html`.
//! - `mime`: `POST /v1/rewrite/mime`.
//! - `links`: `POST /v1/links/click` and `POST /v1/links/open`.

use std::sync::Arc;

use crate::server::admin::router::{AdminRequest, RouteFuture};
use crate::server::admin::{AdminContext, AdminError};
use crate::server::routes::Answer;
use crate::server::State;

mod html;
pub(crate) mod links;
mod mime;
mod request;

pub(crate) use html::rewrite_html;
pub(crate) use mime::rewrite_mime;

/// Runs `work` on the blocking pool with the request's body and serve's state, and answers
/// with what it returns.
fn blocking(
    request: AdminRequest,
    admin: Arc<AdminContext<State>>,
    work: fn(&[u8], &State) -> Result<Answer, AdminError>,
) -> RouteFuture {
    Box::pin(async move {
        let task = tokio::task::spawn_blocking(move || work(&request.body, admin.site()));
        match task.await {
            Ok(answer) => answer,
            // Only a panic in the rewriter gets here: a bug, answered as one.
            Err(e) => Err(AdminError::Internal(format!("the rewrite failed: {e}"))),
        }
    })
}
