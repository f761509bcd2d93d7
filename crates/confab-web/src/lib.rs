//! The web front-end a server runs beside SIP: autodiscover (what the `lyncdiscover` and
//! `lyncdiscoverinternal` names point at) and a health probe.
//!
//! The answers are computed by [`autodiscover::answer`], which knows nothing of HTTP, and
//! rendered as JSON or XML by the Accept header.

pub mod api;
pub mod autodiscover;
pub mod listener;

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use confab_store::Store;
use confab_topology::Topology;

use crate::autodiscover::{AccessLocation, Answer, Format};

pub struct WebState {
    pub topology: Arc<Topology>,
    /// Users are looked up to answer 404 for unknown ones. A separate store handle from the SIP
    /// engine's; SQLite serialises the two.
    pub store: Mutex<Box<dyn Store>>,
    /// The administration API answers over plain HTTP too (a load balancer in front
    /// terminates TLS: the topology's `tls_offload`); otherwise over HTTPS only.
    pub plain_api: bool,
    /// The server's figures in Prometheus' text format, served at `/metrics`.
    pub metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
}

pub fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .nest("/api/v1", api::router())
        .fallback(dispatch)
        .with_state(state)
}

/// Connections served at once; more are closed as they arrive.
const MAX_CONNECTIONS: usize = 1024;
/// How long a client may take to send a request's headers (slow clients are cut off).
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` completes: HTTPS with `tls`, and plain HTTP
/// for autodiscover and health (see [`listener`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: Arc<WebState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut listener = listener::WebListener::new(listener, tls)?;
    let app = router(state);
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let next = tokio::select! {
            c = listener.next() => c,
            () = &mut shutdown => return Ok(()),
        };
        let Some((conn, peer)) = next else {
            return Ok(());
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(remote = %peer.addr, event = "web.refused", "web front-end: too many connections");
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    let mut app = app.clone();
                    async move {
                        tower_service::Service::call(&mut app, req.map(axum::body::Body::new)).await
                    }
                },
            );
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(conn), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(remote = %peer.addr, error = %e, event = "web.connection_ended", "web front-end: connection ended");
            }
            drop(permit);
        });
    }
}

#[derive(Debug, serde::Deserialize)]
struct Params {
    sipuri: Option<String>,
}

/// Paths are matched case-insensitively: clients send `/Autodiscover/AutodiscoverService.svc`.
async fn dispatch(
    State(state): State<Arc<WebState>>,
    uri: Uri,
    headers: HeaderMap,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let path = uri.path().to_ascii_lowercase();
    match path.trim_end_matches('/') {
        "/health" => (StatusCode::OK, "ok\n").into_response(),
        "/metrics" => match &state.metrics {
            Some(render) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                render(),
            )
                .into_response(),
            None => (StatusCode::NOT_FOUND, "no metrics on this server\n").into_response(),
        },
        "/autodiscover/autodiscoverservice.svc/root" => {
            // the query is read here, not by the extractor: a bad one must not turn another
            // path's answer (an API problem document) into the extractor's plain-text 400
            match params {
                Ok(Query(p)) => autodiscover_response(&state, &headers, p.sipuri.as_deref()),
                Err(e) => (
                    StatusCode::BAD_REQUEST,
                    format!("the query string is not valid: {}\n", e.body_text()),
                )
                    .into_response(),
            }
        }
        p if p == "/api" || p.starts_with("/api/") => api::Problem::new(
            StatusCode::NOT_FOUND,
            format!(
                "no such resource: {}; the routes are listed in /api/v1/openapi.json",
                uri.path()
            ),
        )
        .into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            format!(
                "no such page: {}; autodiscover is at /autodiscover/autodiscoverservice.svc/root?sipuri=sip:user@domain\n",
                uri.path()
            ),
        )
            .into_response(),
    }
}

fn autodiscover_response(state: &WebState, headers: &HeaderMap, sipuri: Option<&str>) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let location = AccessLocation::from_host(host);
    let format = Format::from_accept(
        headers
            .get(header::ACCEPT)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default(),
    );
    let user_exists = |aor: &str| -> Result<bool, String> {
        let store = state
            .store
            .lock()
            .map_err(|_| "store lock poisoned".to_owned())?;
        store
            .user(aor)
            .map(|u| u.is_some())
            .map_err(|e| e.to_string())
    };
    let answer = autodiscover::answer(&state.topology, sipuri, location, user_exists);
    let (status, body) = match &answer {
        Answer::BadRequest(reason) => (StatusCode::BAD_REQUEST, format!("{reason}\n")),
        Answer::NotFound(reason) => (StatusCode::NOT_FOUND, format!("{reason}\n")),
        Answer::Unavailable(reason) => {
            tracing::error!(%reason, "autodiscover cannot read the user store");
            (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n"))
        }
        Answer::Document(doc) => (StatusCode::OK, doc.render(format)),
    };
    let content_type = match (&answer, format) {
        (Answer::Document(_), Format::Json) => "application/json",
        (Answer::Document(_), Format::Xml) => "application/xml; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    };
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}
