//! The administration API under `/api/v1`: JSON over HTTPS, bearer tokens, problem documents
//! (RFC 9457) for every error. The handlers call `confab_admin`, as the command line does;
//! the OpenAPI document is derived from the handlers and types (`utoipa`), so it lists
//! exactly the routes served.

mod contacts;
mod deployment;
mod problem;
mod users;

use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use confab_admin::{Actor, AdminError, Kind};
use confab_store::Store;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

pub use problem::Problem;

use crate::listener::Peer;
use crate::WebState;

/// Request bodies larger than this are refused (413).
pub const MAX_BODY: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Confab administration API",
        description = "Users, administrators' audit log and the deployment, as `confab` manages them. Authenticate with `Authorization: Bearer <token>` (tokens: `confab admin token NAME`)."
    ),
    servers((url = "/api/v1", description = "this server")),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The API's routes (relative to `/api/v1`) and their OpenAPI document.
pub fn routes() -> (axum::Router<Arc<WebState>>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(users::routes())
        .merge(contacts::routes())
        .merge(deployment::routes())
        .split_for_parts();
    every_operation_may_fail(&mut doc);
    (router, doc)
}

/// Adds to every operation the problems any request may get: no valid token (401), a role
/// without the right (403), a bad body or query (400), the database unreachable (503).
fn every_operation_may_fail(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let problem = |what: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build(),
        )
    };
    for item in doc.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ];
        for op in ops.into_iter().flatten() {
            for (code, what) in [
                ("400", "The request is malformed (body, query or path)"),
                ("401", "No valid token"),
                (
                    "403",
                    "The token's roles do not allow it, or not over HTTPS",
                ),
                ("503", "The database cannot be reached now; retry"),
            ] {
                op.responses
                    .responses
                    .entry(code.to_owned())
                    .or_insert_with(|| problem(what));
            }
        }
    }
}

/// The document as served at `/api/v1/openapi.json`.
pub fn openapi_json() -> String {
    let (_, doc) = routes();
    doc.to_pretty_json().unwrap_or_default()
}

/// The router mounted at `/api/v1`.
pub(crate) fn router() -> axum::Router<Arc<WebState>> {
    let (api, doc) = routes();
    let doc = Arc::new(doc.to_pretty_json().unwrap_or_default());
    api.route(
        "/openapi.json",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    doc.as_str().to_owned(),
                )
            }
        }),
    )
    .fallback(|uri: axum::http::Uri| async move {
        Problem::new(
            StatusCode::NOT_FOUND,
            format!(
                "no such resource: {}; the routes are listed in /api/v1/openapi.json",
                uri.path()
            ),
        )
    })
    .method_not_allowed_fallback(|| async {
        Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "this resource does not take that method; see /api/v1/openapi.json",
        )
    })
    .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

/// The authenticated administrator making a request.
pub(crate) struct Caller(pub(crate) Actor);

impl FromRequestParts<Arc<WebState>> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<WebState>,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<Peer>>()
            .map(|c| c.0)
            .ok_or_else(|| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "no peer address"))?;
        if !peer.tls && !state.plain_api {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "the administration API is served over HTTPS only: use https:// on this port",
            ));
        }
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_owned());
        let Some(token) = token else {
            return Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "no token: send `Authorization: Bearer <token>` (an administrator makes one with `confab admin token NAME`)",
            ));
        };
        let from = peer.addr.to_string();
        let actor = with_store(state, move |store| {
            confab_admin::tokens::authenticate(store, &token, &from, confab_admin::unix_now())
        })
        .await?;
        Ok(Self(actor))
    }
}

/// Runs `f` on the store off the async workers (a PostgreSQL query may wait on the network).
pub(crate) async fn with_store<T: Send + 'static>(
    state: &Arc<WebState>,
    f: impl FnOnce(&dyn Store) -> confab_admin::Result<T> + Send + 'static,
) -> Result<T, Problem> {
    let state = state.clone();
    let done = tokio::task::spawn_blocking(move || {
        let store = state
            .store
            .lock()
            .map_err(|_| AdminError::new(Kind::Internal, "the store's lock was poisoned"))?;
        f(store.as_ref())
    })
    .await;
    match done {
        Ok(r) => r.map_err(Problem::from),
        Err(_) => Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the request's database work failed",
        )),
    }
}

/// A JSON answer with the object's version.
pub(crate) fn with_etag<T: serde::Serialize>(
    status: StatusCode,
    etag: String,
    body: &T,
) -> Response {
    (status, [(header::ETAG, etag)], Json(body)).into_response()
}

/// A path's parameters, or a problem saying what is wrong with them.
pub(crate) fn path<T>(
    p: Result<axum::extract::Path<T>, axum::extract::rejection::PathRejection>,
) -> Result<T, Problem> {
    p.map(|axum::extract::Path(a)| a).map_err(|r| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!("the path is not valid: {}", r.body_text()),
        )
    })
}
