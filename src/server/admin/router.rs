//! Which admin route a request goes to, and everything every route gets alike: the token
//! check, `404` and `405` as JSON, and the body read whole and bounded before the route runs.
//!
//! A route is one line in [`ROUTES`]: a method, a path, a name (its metrics label) and an
//! async handler that gets the request and the listener's context and answers, or fails
//! with an [`AdminError`] that becomes a JSON error.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::{Method, Request};

use super::auth::authorize;
use super::body::{read_bounded, BODY_READ_TIMEOUT};
use super::error::AdminError;
use super::{api, operator, AdminContext, AdminSite};
use crate::server::routes::Answer;
use crate::server::State;

/// A request as a route gets it: its head, and its body, read whole.
#[derive(Debug)]
pub struct AdminRequest {
    /// Method, URI, headers.
    pub head: Parts,
    /// The body, at most `admin.max_body_bytes`.
    pub body: Bytes,
}

/// What a route's handler returns.
pub type RouteFuture = Pin<Box<dyn Future<Output = Result<Answer, AdminError>> + Send>>;

/// A route's handler, for a listener serving site `S`.
pub type Handler<S> = fn(AdminRequest, Arc<AdminContext<S>>) -> RouteFuture;

/// One admin route of a listener serving site `S`.
pub struct Route<S> {
    /// The method it takes (GET routes take HEAD too).
    pub method: Method,
    /// Its path, exactly.
    pub path: &'static str,
    /// Its label in `mailtrack_admin_requests_total`.
    pub name: &'static str,
    /// What answers it.
    pub handler: Handler<S>,
}

/// Every operator and API route of serve's listener.
pub static ROUTES: &[Route<State>] = &[
    Route {
        method: Method::GET,
        path: "/metrics",
        name: "metrics",
        handler: operator::metrics,
    },
    Route {
        method: Method::POST,
        path: "/v1/rewrite/html",
        name: "rewrite_html",
        handler: api::rewrite_html,
    },
    Route {
        method: Method::POST,
        path: "/v1/rewrite/mime",
        name: "rewrite_mime",
        handler: api::rewrite_mime,
    },
    Route {
        method: Method::POST,
        path: "/v1/links/click",
        name: "links_click",
        handler: api::links::click,
    },
    Route {
        method: Method::POST,
        path: "/v1/links/open",
        name: "links_open",
        handler: api::links::open,
    },
];

/// Answers `request`, and counts the answer.
pub(crate) async fn answer<S: AdminSite>(
    request: Request<Incoming>,
    admin: Arc<AdminContext<S>>,
) -> Answer {
    let routes = admin.site.routes();
    let path = request.uri().path();
    let route = find(routes, request.method(), path);
    // The path's route, whatever the method: a 405 or 401 counts against the route asked for.
    let name = routes
        .iter()
        .find(|route| route.path == path)
        .map_or("other", |route| route.name);
    let answer = match serve(request, route, &admin).await {
        Ok(answer) => answer,
        Err(error) => error.answer(),
    };
    let status = answer.status().as_u16();
    admin.site.answered(name, status);
    tracing::debug!(route = name, status, "admin answered");
    answer
}

/// The token first: without it, nothing about the routes is told, not even which exist.
async fn serve<S: AdminSite>(
    request: Request<Incoming>,
    route: Result<&'static Route<S>, AdminError>,
    admin: &Arc<AdminContext<S>>,
) -> Result<Answer, AdminError> {
    if admin.site.needs_token(request.uri().path()) {
        authorize(admin.token.as_ref(), request.headers())?;
    }
    let route = route?;
    let (head, body) = request.into_parts();
    let body = read_bounded(body, admin.max_body_bytes, BODY_READ_TIMEOUT).await?;
    (route.handler)(AdminRequest { head, body }, Arc::clone(admin)).await
}

/// The route of `routes` for `method` and `path`, or why there is none.
fn find<S>(
    routes: &'static [Route<S>],
    method: &Method,
    path: &str,
) -> Result<&'static Route<S>, AdminError> {
    let method = match *method {
        Method::HEAD => &Method::GET,
        ref other => other,
    };
    let mut on_path = routes.iter().filter(|route| route.path == path).peekable();
    if on_path.peek().is_none() {
        return Err(AdminError::NotFound {
            path: path.to_owned(),
        });
    }
    let mut allow = Vec::new();
    for route in on_path {
        if route.method == method {
            return Ok(route);
        }
        allow.push(route.method.as_str());
        if route.method == Method::GET {
            allow.push("HEAD");
        }
    }
    Err(AdminError::MethodNotAllowed {
        path: path.to_owned(),
        method: method.to_string(),
        allow: allow.join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_found_by_method_and_path() {
        assert_eq!(
            find(ROUTES, &Method::GET, "/metrics").unwrap().name,
            "metrics"
        );
        assert_eq!(
            find(ROUTES, &Method::HEAD, "/metrics").unwrap().name,
            "metrics"
        );
        match find(ROUTES, &Method::POST, "/metrics") {
            Err(AdminError::MethodNotAllowed { allow, .. }) => assert_eq!(allow, "GET, HEAD"),
            other => panic!("{:?}", other.map(|route| route.name)),
        }
        assert!(matches!(
            find(ROUTES, &Method::GET, "/metrics/"),
            Err(AdminError::NotFound { .. })
        ));
    }
}
