//! `/topology`, `/topology/validate`, `/pools`, `/servers/{fqdn}/draining`.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use confab_admin::deployment::{self, PoolView, TopologyView, Validation};
use confab_admin::Right;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{path, with_store, Caller, Problem};
use crate::WebState;

pub(super) fn routes() -> OpenApiRouter<Arc<WebState>> {
    OpenApiRouter::new()
        .routes(routes!(topology))
        .routes(routes!(validate))
        .routes(routes!(pools))
        .routes(routes!(draining))
}

/// The deployment this server runs in: domains and where they sign in, certificates, DNS.
#[utoipa::path(get, path = "/topology", tag = "deployment",
    responses((status = 200, description = "The deployment", body = TopologyView)))]
async fn topology(
    State(state): State<Arc<WebState>>,
    Caller(actor): Caller,
) -> Result<Json<TopologyView>, Problem> {
    actor.require(Right::Read)?;
    Ok(Json(deployment::view(&state.topology)))
}

/// A topology document (TOML) to check.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Document {
    document: String,
}

/// Checks a topology file for the mistakes that break sign-in, federation or pools (nothing
/// is changed): every finding with what it breaks and how to fix it.
#[utoipa::path(post, path = "/topology/validate", tag = "deployment", request_body = Document,
    responses(
        (status = 200, description = "The findings (errors and warnings)", body = Validation),
        (status = 400, description = "The document does not load", body = Problem, content_type = "application/problem+json"),
    ))]
async fn validate(
    Caller(actor): Caller,
    body: Result<Json<Document>, JsonRejection>,
) -> Result<Json<Validation>, Problem> {
    actor.require(Right::Read)?;
    let Json(doc) = body?;
    Ok(Json(deployment::validate(&doc.document, "the document")?))
}

/// The pools and their servers, with whether each is drained.
#[utoipa::path(get, path = "/pools", tag = "deployment",
    responses((status = 200, description = "The pools", body = Vec<PoolView>)))]
async fn pools(
    State(state): State<Arc<WebState>>,
    Caller(actor): Caller,
) -> Result<Json<Vec<PoolView>>, Problem> {
    let topology = state.topology.clone();
    Ok(Json(
        with_store(&state, move |s| deployment::pools(s, &topology, &actor)).await?,
    ))
}

/// Whether a server takes new sign-ins.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Draining {
    /// True: its clients' next REGISTER goes to the pool's other servers.
    draining: bool,
}

/// Drains a server of its pool, or takes it back.
#[utoipa::path(put, path = "/servers/{fqdn}/draining", tag = "deployment", request_body = Draining,
    params(("fqdn" = String, Path, description = "a server of the topology")),
    responses(
        (status = 204, description = "Done; running servers apply it within 2 s"),
        (status = 404, description = "Not a server of the topology", body = Problem, content_type = "application/problem+json"),
    ))]
async fn draining(
    State(state): State<Arc<WebState>>,
    Caller(actor): Caller,
    fqdn: Result<Path<String>, PathRejection>,
    body: Result<Json<Draining>, JsonRejection>,
) -> Result<StatusCode, Problem> {
    let fqdn = path(fqdn)?;
    let Json(d) = body?;
    let topology = state.topology.clone();
    with_store(&state, move |s| {
        deployment::drain(s, &topology, &actor, &fqdn, d.draining)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
