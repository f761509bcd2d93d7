//! `/users/{address}/contacts`, `/users/{address}/privacy`.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use confab_admin::contacts::{self, ContactList, NewContact, PrivacyChange, PrivacyView};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{path, with_store, Caller, Problem};
use crate::WebState;

pub(super) fn routes() -> OpenApiRouter<Arc<WebState>> {
    OpenApiRouter::new()
        .routes(routes!(list_contacts, add_contact))
        .routes(routes!(remove_contact))
        .routes(routes!(add_group))
        .routes(routes!(remove_group))
        .routes(routes!(get_privacy, change_privacy))
}

/// A user's contacts and groups.
#[utoipa::path(get, path = "/users/{address}/contacts", tag = "contacts",
    params(("address" = String, Path, description = "the list's owner, user@domain")),
    responses(
        (status = 200, description = "The list", body = ContactList),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_contacts(
    State(state): State<Arc<WebState>>,
    Caller(actor): Caller,
    owner: Result<Path<String>, PathRejection>,
) -> Result<Json<ContactList>, Problem> {
    let owner = path(owner)?;
    Ok(Json(
        with_store(&state, move |s| contacts::list(s, &actor, &owner)).await?,
    ))
}

/// Adds a contact (in a group, made when missing); adding one already there changes nothing.
#[utoipa::path(post, path = "/users/{address}/contacts", tag = "contacts", request_body = NewContact,
    params(("address" = String, Path, description = "the list's owner, user@domain")),
    responses(
        (status = 200, description = "The list now", body = ContactList),
        (status = 400, description = "Not an address", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    ))]
async fn add_contact(
    State(state): State<Arc<WebState>>,
    Caller(actor): Caller,
    owner: Result<Path<String>, PathRejection>,
    body: Result<Json<NewContact>, JsonRejection>,
) -> Result<Json<ContactList>, Problem> {
    let owner = path(owner)?;
    let Json(new) = body?;
    Ok(Json(
        with_store(&state, move |s| contacts::add(s, &actor, &owner, &new)).await?,
    ))
}

/// Removes a contact from the list (every group).
#[utoipa::path(delete, path = "/users/{address}/contacts/{contact}", tag = "contacts",
    params(("address" = String, Path, description = "the list's owner"),
           ("contact" = String, Path, description = "the contact to remove")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such user, or not on the list", body = Problem, content_type = "application/problem+json"),
    ))]
async fn remove_contact(
    State(state): State<Arc<WebState>>,
    Caller(actor): Caller,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let (owner, contact) = path(p)?;
    with_store(&state, move |s| {
        contacts::remove(s, &actor, &owner, &contact)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A group's name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Group {
    name: String,
}

/// Makes a group on the list.
#[utoipa::path(post, path = "/users/{address}/contacts/groups", tag = "contacts", request_body = Group,
    params(("address" = String, Path, description = "the list's owner")),
    responses(
        (status = 204, description = "Made"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    ))]
async fn add_group(
    State(state): State<Arc<WebState>>,
    Caller(actor): Caller,
    owner: Result<Path<String>, PathRejection>,
    body: Result<Json<Group>, JsonRejection>,
) -> Result<StatusCode, Problem> {
    let owner = path(owner)?;
    let Json(g) = body?;
    with_store(&state, move |s| {
        contacts::add_group(s, &actor, &owner, &g.name)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a group; its contacts stay on the list.
#[utoipa::path(delete, path = "/users/{address}/contacts/groups/{group}", tag = "contacts",
    params(("address" = String, Path, description = "the list's owner"),
           ("group" = String, Path, description = "the group")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such user or group", body = Problem, content_type = "application/problem+json"),
    ))]
async fn remove_group(
    State(state): State<Arc<WebState>>,
    Caller(actor): Caller,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let (owner, group) = path(p)?;
    with_store(&state, move |s| {
        contacts::remove_group(s, &actor, &owner, &group)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who sees the user's presence, and whom it blocks.
#[utoipa::path(get, path = "/users/{address}/privacy", tag = "contacts",
    params(("address" = String, Path, description = "user@domain")),
    responses(
        (status = 200, description = "The user's privacy", body = PrivacyView),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_privacy(
    State(state): State<Arc<WebState>>,
    Caller(actor): Caller,
    owner: Result<Path<String>, PathRejection>,
) -> Result<Json<PrivacyView>, Problem> {
    let owner = path(owner)?;
    Ok(Json(
        with_store(&state, move |s| contacts::privacy(s, &actor, &owner)).await?,
    ))
}

/// Changes who sees the user's presence and whom it blocks; what is left out stays.
#[utoipa::path(put, path = "/users/{address}/privacy", tag = "contacts", request_body = PrivacyChange,
    params(("address" = String, Path, description = "user@domain")),
    responses(
        (status = 200, description = "The user's privacy now", body = PrivacyView),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    ))]
async fn change_privacy(
    State(state): State<Arc<WebState>>,
    Caller(actor): Caller,
    owner: Result<Path<String>, PathRejection>,
    body: Result<Json<PrivacyChange>, JsonRejection>,
) -> Result<Json<PrivacyView>, Problem> {
    let owner = path(owner)?;
    let Json(change) = body?;
    Ok(Json(
        with_store(&state, move |s| {
            contacts::set_privacy(s, &actor, &owner, &change)
        })
        .await?,
    ))
}
