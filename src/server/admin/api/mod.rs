//! The rewrite API, `/v1/…` on the admin listener: what `mailtrack rewrite`, `sign` and
//! `pixel` do, over HTTP with JSON, for senders in any language. Each answer holds the
//! result and the report the CLI writes; bad input gets a 4xx whose `error` names what was
//! wrong (the field, the MIME part) and why.
//!
//! Rewriting is CPU work of a millisecond or so per message (more for a large MIME
//! message). It runs on the admin listener's own threads (`admin.workers`), never on the
//! public listeners' workers; a large body goes on to the blocking pool (`rewrite`).
//!
//! # Layout
//!
//! - `request`: the fields every route takes (message id, send time, message tags).
//! - `html`: `POST /v1/rewrite/html`.
//! - `mime`: `POST /v1/rewrite/mime`.
//! - `links`: `POST /v1/links/click` and `POST /v1/links/open`.

use std::panic::AssertUnwindSafe;
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

/// The largest body rewritten on the admin worker that read it: a quarter of a millisecond
/// to a millisecond of work. Handing the 100 KB newsletter to another thread cost the API
/// a tenth of its throughput (benches/README.md, "api"); a larger body, a MIME message with
/// attachments, goes to the blocking pool, so that it holds up no other admin request.
const INLINE_BODY_BYTES: usize = 256 * 1024;

/// Runs `work` with the request and serve's state, and answers with what it returns: on this
/// thread (one of the admin listener's own, `admin::accept_loop`) for a body of up to
/// [`INLINE_BODY_BYTES`], on the blocking pool for a larger one.
fn rewrite(
    request: AdminRequest,
    admin: Arc<AdminContext<State>>,
    work: fn(&AdminRequest, &State) -> Result<Answer, AdminError>,
) -> RouteFuture {
    Box::pin(async move {
        if request.body.len() <= INLINE_BODY_BYTES {
            let answer =
                std::panic::catch_unwind(AssertUnwindSafe(|| work(&request, admin.site())));
            return answer.unwrap_or_else(|_| Err(panicked()));
        }
        let task = tokio::task::spawn_blocking(move || work(&request, admin.site()));
        task.await.unwrap_or_else(|_| Err(panicked()))
    })
}

/// What a panic in the rewriter is answered with: a bug, answered as one.
fn panicked() -> AdminError {
    AdminError::Internal("the rewrite failed".to_owned())
}
