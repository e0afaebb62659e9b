//! `mailtrack notify`'s own admin listener, on `[notify] admin_listen`: serve's admin
//! machinery (`server::admin`: the accept loop, the bearer token of `[admin] token_file`, the
//! bounded body, the JSON errors) with notify's routes:
//!
//! - `GET /metrics`: every endpoint's series ([`NotifyMetrics::encode`]), OpenMetrics text;
//! - `GET /healthz`: `200 ok` while the process runs, for a load balancer or systemd probe;
//! - `GET /sns/confirm`: an SNS receiver confirming its subscription by its `SubscribeURL`.
//!   The one route that needs no bearer token: the unguessable `Token` in the URL is the
//!   credential (see [`mailtrack::notify::sns::confirm`]), and SNS receivers know no other.
//!
//! It is wired here, in the command line, because `server` and `notify` never import each
//! other: `server` lends the listener, `notify` the metrics.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};
use tokio::sync::watch;

use mailtrack::config::AdminConfig;
use mailtrack::notify::metrics::NotifyMetrics;
use mailtrack::notify::sns::{self, ConfirmAnswer};
use mailtrack::server::admin::router::{AdminRequest, Route, RouteFuture};
use mailtrack::server::admin::{self, AdminContext, AdminListener, AdminSite, AdminTimeouts};
use mailtrack::server::ServerError;
use mailtrack::Config;

use super::sns::SnsSubscriptions;

/// What notify's admin routes answer from: the metrics every worker counts into, and the SNS
/// endpoints' subscriptions (if any endpoint is SNS).
#[derive(Clone)]
pub(super) struct NotifySite {
    metrics: Arc<NotifyMetrics>,
    sns: Option<Arc<SnsSubscriptions>>,
}

/// Notify's routes.
static ROUTES: &[Route<NotifySite>] = &[
    Route {
        method: Method::GET,
        path: "/metrics",
        name: "metrics",
        handler: metrics,
    },
    Route {
        method: Method::GET,
        path: "/healthz",
        name: "healthz",
        handler: healthz,
    },
    Route {
        method: Method::GET,
        path: sns::CONFIRM_PATH,
        name: "sns_confirm",
        handler: sns_confirm,
    },
];

impl AdminSite for NotifySite {
    fn routes(&self) -> &'static [Route<NotifySite>] {
        ROUTES
    }

    fn answered(&self, _route: &'static str, _status: u16) {
        // Notify's metrics are its endpoints'; the router logs each answer at debug.
    }

    fn shed(&self) {
        tracing::debug!("notify admin: at the connection cap");
    }

    fn needs_token(&self, path: &str) -> bool {
        path != sns::CONFIRM_PATH
    }
}

/// Binds `[notify] admin_listen`, guarded by `[admin]`'s token and body cap.
pub(super) async fn bind(config: &Config) -> Result<AdminListener, ServerError> {
    let settings = AdminConfig {
        listen: config.notify.admin_listen,
        ..config.admin.clone()
    };
    let listener = admin::bind(&settings).await?;
    if let Ok(addr) = listener.local_addr() {
        // The same words and field as serve's "admin listening", so scripts find the port.
        tracing::info!(%addr, token = listener.has_token(), "notify admin listening");
    }
    Ok(listener)
}

/// Serves `metrics` on `listener` until `shutdown` turns true; `[server]`'s header read
/// timeout and shutdown grace hold its connections, as they hold serve's.
pub(super) async fn serve(
    listener: AdminListener,
    config: &Config,
    metrics: Arc<NotifyMetrics>,
    sns: Option<Arc<SnsSubscriptions>>,
    shutdown: watch::Receiver<bool>,
) {
    let timeouts = AdminTimeouts {
        header_read_timeout: config.server.header_read_timeout,
        shutdown_grace: config.server.shutdown_grace,
    };
    admin::run(listener, NotifySite { metrics, sns }, timeouts, shutdown).await;
}

/// `GET /metrics`.
fn metrics(_request: AdminRequest, admin: Arc<AdminContext<NotifySite>>) -> RouteFuture {
    let body = admin.site().metrics.encode();
    let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    Box::pin(std::future::ready(Ok(text(body, kind))))
}

/// `GET /healthz`: the process is up and its listener answers.
fn healthz(_request: AdminRequest, _admin: Arc<AdminContext<NotifySite>>) -> RouteFuture {
    Box::pin(std::future::ready(Ok(text(
        "ok\n".to_owned(),
        "text/plain; charset=utf-8",
    ))))
}

/// `GET /sns/confirm?…&endpoint=NAME&Token=…`: `ConfirmSubscriptionResponse` XML, or a JSON
/// error (403 for a wrong token, 404 for no such SNS endpoint).
fn sns_confirm(request: AdminRequest, admin: Arc<AdminContext<NotifySite>>) -> RouteFuture {
    Box::pin(async move {
        let answer = match &admin.site().sns {
            Some(sns) => sns.confirm(request.head.uri.query()).await,
            None => ConfirmAnswer {
                status: 404,
                content_type: "application/json",
                body: serde_json::json!({ "error": "no endpoint here is SNS" }).to_string(),
            },
        };
        let mut response = text(answer.body, answer.content_type);
        // The statuses `confirm` answers with are all valid.
        *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
        Ok(response)
    })
}

fn text(body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut answer = Response::new(Full::new(Bytes::from(body)));
    let headers = answer.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    answer
}
