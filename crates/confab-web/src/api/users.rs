//! `/users`, `/audit`, `/me`.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use confab_admin::audit::{self, Entry};
use confab_admin::users::{
    self, Import, Imported, NewUser, UserChange, UserFilter, UserPage, UserView,
};
use confab_admin::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{path, with_etag, with_store, Caller, Problem};
use crate::WebState;

pub(super) fn routes() -> OpenApiRouter<Arc<WebState>> {
    OpenApiRouter::new()
        .routes(routes!(list_users, add_user))
        .routes(routes!(import_users))
        .routes(routes!(get_user, change_user, remove_user))
        .routes(routes!(set_password))
        .routes(routes!(unlock_user))
        .routes(routes!(audit_log))
        .routes(routes!(me))
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Lists users, a page at a time, in address order.
#[utoipa::path(get, path = "/users", tag = "users", params(UserFilter),
    responses(
        (status = 200, description = "A page of users", body = UserPage),
        (status = 400, description = "A bad filter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_users(
    State(state): State<Arc<WebState>>,
    Caller(actor): Caller,
    filter: Result<Query<UserFilter>, QueryRejection>,
) -> Result<Json<UserPage>, Problem> {
    let Query(filter) = filter?;
    let page = with_store(&state, move |s| users::list(s, &actor, &filter)).await?;
    Ok(Json(page))
}

/// Adds a user.
#[utoipa::path(post, path = "/users", tag = "users", request_body = NewUser,
    responses(
        (status = 201, description = "Added; `Location` names it, `ETag` is its version", body = UserView),
        (status = 400, description = "A bad address, password or pool", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's roles do not allow it", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The user exists, or a service answers at that address", body = Problem, content_type = "application/problem+json"),
    ))]
async fn add_user(
    State(state): State<Arc<WebState>>,
    Caller(actor): Caller,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Result<Response, Problem> {
    let Json(new) = body?;
    let topology = state.topology.clone();
    let u = with_store(&state, move |s| {
        users::add(s, Some(&topology), &actor, &new)
    })
    .await?;
    let mut r = with_etag(StatusCode::CREATED, u.etag(), &u);
    if let Ok(v) = header::HeaderValue::from_str(&format!("/api/v1/users/{}", u.address)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// Adds many users at once, all or none; those already there are left as they are.
#[utoipa::path(post, path = "/users/import", tag = "users", request_body = Import,
    responses(
        (status = 200, description = "How many were added", body = Imported),
        (status = 400, description = "A bad address, password or pool (nothing added)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A service answers at one of the addresses (nothing added)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn import_users(
    State(state): State<Arc<WebState>>,
    Caller(actor): Caller,
    body: Result<Json<Import>, JsonRejection>,
) -> Result<Json<Imported>, Problem> {
    let Json(import) = body?;
    let topology = state.topology.clone();
    let done = with_store(&state, move |s| {
        users::import(s, Some(&topology), &actor, &import)
    })
    .await?;
    Ok(Json(done))
}

/// One user, with its version in `ETag`.
#[utoipa::path(get, path = "/users/{address}", tag = "users",
    params(("address" = String, Path, description = "user@domain")),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_user(
    State(state): State<Arc<WebState>>,
    Caller(actor): Caller,
    address: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let address = path(address)?;
    let u = with_store(&state, move |s| users::get(s, &actor, &address)).await?;
    Ok(with_etag(StatusCode::OK, u.etag(), &u))
}

/// Changes a user's settings: what the body leaves out stays as it is, so the same request
/// twice leaves the same user. With `If-Match`, an edit against an older version is refused.
#[utoipa::path(put, path = "/users/{address}", tag = "users", request_body = UserChange,
    params(("address" = String, Path, description = "user@domain"),
           ("If-Match" = Option<String>, Header, description = "the ETag the change was made against")),
    responses(
        (status = 200, description = "The user as it now is", body = UserView),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The user changed since that version", body = Problem, content_type = "application/problem+json"),
    ))]
async fn change_user(
    State(state): State<Arc<WebState>>,
    Caller(actor): Caller,
    address: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Json<UserChange>, JsonRejection>,
) -> Result<Response, Problem> {
    let address = path(address)?;
    let Json(change) = body?;
    let tag = if_match(&headers);
    let topology = state.topology.clone();
    let u = with_store(&state, move |s| {
        users::change(
            s,
            Some(&topology),
            &actor,
            &address,
            &change,
            tag.as_deref(),
        )
    })
    .await?;
    Ok(with_etag(StatusCode::OK, u.etag(), &u))
}

/// Removes a user (with `If-Match`: only if it is still that version).
#[utoipa::path(delete, path = "/users/{address}", tag = "users",
    params(("address" = String, Path, description = "user@domain"),
           ("If-Match" = Option<String>, Header, description = "the ETag the removal was decided on")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The user changed since that version", body = Problem, content_type = "application/problem+json"),
    ))]
async fn remove_user(
    State(state): State<Arc<WebState>>,
    Caller(actor): Caller,
    address: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<StatusCode, Problem> {
    let address = path(address)?;
    let tag = if_match(&headers);
    with_store(&state, move |s| {
        users::remove(s, &actor, &address, tag.as_deref())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Password {
    password: String,
}

/// Sets a user's password.
#[utoipa::path(put, path = "/users/{address}/password", tag = "users", request_body = Password,
    params(("address" = String, Path, description = "user@domain")),
    responses(
        (status = 204, description = "Set"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    ))]
async fn set_password(
    State(state): State<Arc<WebState>>,
    Caller(actor): Caller,
    address: Result<Path<String>, PathRejection>,
    body: Result<Json<Password>, JsonRejection>,
) -> Result<StatusCode, Problem> {
    let address = path(address)?;
    let Json(p) = body?;
    with_store(&state, move |s| {
        users::set_password(s, &actor, &address, &p.password)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lifts a user's sign-in lockout (running servers apply it within 2 s).
#[utoipa::path(post, path = "/users/{address}/unlock", tag = "users",
    params(("address" = String, Path, description = "user@domain")),
    responses(
        (status = 204, description = "Unlocked"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    ))]
async fn unlock_user(
    State(state): State<Arc<WebState>>,
    Caller(actor): Caller,
    address: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let address = path(address)?;
    with_store(&state, move |s| users::unlock(s, &actor, &address)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Which entries of the audit log.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditFilter {
    /// Only this administrator's changes.
    #[serde(default)]
    who: Option<String>,
}

/// The audit log, oldest first.
#[utoipa::path(get, path = "/audit", tag = "administrators", params(AuditFilter),
    responses(
        (status = 200, description = "The changes", body = Vec<Entry>),
        (status = 403, description = "Only administrators read the audit log", body = Problem, content_type = "application/problem+json"),
    ))]
async fn audit_log(
    State(state): State<Arc<WebState>>,
    Caller(actor): Caller,
    filter: Result<Query<AuditFilter>, QueryRejection>,
) -> Result<Json<Vec<Entry>>, Problem> {
    let Query(f) = filter?;
    let entries = with_store(&state, move |s| audit::entries(s, &actor, f.who.as_deref())).await?;
    Ok(Json(entries))
}

/// Who a token stands for.
#[derive(Debug, Serialize, ToSchema)]
struct Me {
    name: String,
    roles: Vec<Role>,
}

/// The administrator the token stands for, and their roles.
#[utoipa::path(get, path = "/me", tag = "administrators",
    responses(
        (status = 200, description = "The administrator", body = Me),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ))]
async fn me(Caller(actor): Caller) -> impl IntoResponse {
    Json(Me {
        name: actor.name,
        roles: actor.roles,
    })
}
