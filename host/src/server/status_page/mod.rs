//! The operators' status page at `/admin`: server-rendered HTML, no JavaScript, plain forms.
//!
//! Login: `POST /admin/login` with the admin token (form field `token`) sets a session cookie
//! (random 256-bit id, HttpOnly, SameSite=Strict, Path=/admin, 12 h, kept in memory);
//! `POST /admin/logout` ends it. Every form POST carries the session's CSRF token in the hidden
//! field `csrf` (checked in constant time; missing or wrong: 403). Actions are POSTs under
//! `/admin/ui/...` that answer 303 back to `/admin`, with a flash message in the session.
//! The JSON API under `/admin/...` keeps its bearer token.
//!
//! Markup a browser test relies on (stable):
//! - `form#login` (`input#token`), `p#login-error` after a refused token; `form#logout`.
//! - `p#flash`: the outcome of the last action.
//! - `table#tenants`, one `tr.tenant[data-tenant=NAME]` per tenant with cells `.name`, `.owner`,
//!   `.version` (`code.hash`, `.source`), `.last-success`, `.last-failure`, `.calls`,
//!   `.error-rate`, `.cpu`, `.breakers`, `.outbox`.
//! - `#activity figure[data-tenant=NAME] svg.chart`: deliveries per minute, last hour.
//! - `form#dead-letter-search` (`select[name=tenant]`, `input[name=q]`), `p#dead-letter-count`;
//!   `table#dead-letters`, one `tr.dead-letter[data-delivery-id=ID][data-tenant=NAME]` each with
//!   `form.replay` (`select[name=to_tenant]`, empty = same tenant).
//! - `#deployments .tenant-deploy[data-tenant=NAME]` with `form.deploy` (file input
//!   `component`; it posts to `/admin/ui/deploy?tenant=NAME`, which takes the tenant's upload
//!   slot before the body is read, as the API does; its number input `canary`, when filled,
//!   deploys the version as a canary serving that percent of the tickets), `form.rollback`, and
//!   `ol.versions li.version[data-hash=HASH]` (`.active` marks the running one, `.canary` the
//!   canary); while a canary runs, `table.canary[data-tenant=NAME]` with rows `tr.current` and
//!   `tr.canary` (cells `.calls`, `.failures`, `.failure-rate`, `.latency`), `p.canary-verdict`,
//!   `form.canary-promote` and `form.canary-abort`.
//! - `table#history tr.event[data-kind=KIND][data-tenant=NAME]`: reloads, rejected versions,
//!   deployments and rollbacks.
//! - `p#problem[data-code=CODE]` on a refused request's page.

mod render;
mod session;

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;

use super::auth::{self, tokens_match};
use super::auth_throttle::Credential;
use super::deployments::{self, take_upload_slot};
use super::{ApiError, AppState, Body, read_body_timed};
use crate::clock::now_ms;
use crate::contract::shorten;
use crate::store::DeadLetterFilter;
use render::{HistoryRow, PageData, Search, TenantRow, VersionRow};
pub use session::Sessions;
use session::{SESSION_TTL, SessionView};

/// The stylesheet, served from `/admin/static/style.css` (the CSP allows styles from 'self' only).
const STYLE: &str = include_str!("../static/style.css");
/// The security headers of every page response.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";
/// Largest form body (replay, rollback, login).
const FORM_LIMIT: usize = 64 * 1024;
/// Dead letters read for a search, and shown.
const DEAD_LETTERS_READ: usize = 1000;
const DEAD_LETTERS_SHOWN: usize = 100;

/// Whether `path` belongs to the status page rather than the JSON API.
pub fn owns(path: &str) -> bool {
    matches!(path, "/admin" | "/admin/" | "/admin/login" | "/admin/logout")
        || path.starts_with("/admin/ui/")
        || path.starts_with("/admin/static/")
}

/// A page response with the security headers.
fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    respond(status, "text/html; charset=utf-8", body)
}

fn problem(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    html(status, render::problem_page(code, message))
}

/// 303 to `/admin`, optionally setting a cookie.
fn back_to_page(cookie: Option<String>) -> Response<Body> {
    let mut response = respond(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/admin"));
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

fn session_id(request: &Request<Incoming>) -> Option<String> {
    request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session::cookie_session)
        .map(str::to_string)
}

/// Routes a status page request.
pub async fn handle(state: &AppState, path: &str, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let Some(token) = state.admin_token.as_deref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "admin_disabled",
            "admin endpoints are off: set [admin] token in the configuration",
        ));
    };
    let method = request.method().clone();
    if path == "/admin/static/style.css" && method == Method::GET {
        let mut response = respond(StatusCode::OK, "text/css; charset=utf-8", STYLE);
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
        return Ok(response);
    }
    if path == "/admin/login" && method == Method::POST {
        return login(state, token, request).await;
    }
    let id = session_id(&request);
    let session = id
        .as_deref()
        .and_then(|id| state.sessions.open(id).map(|s| (id.to_string(), s)));
    let (id, session) = match (session, path, &method) {
        (Some(session), _, _) => session,
        (None, "/admin" | "/admin/", &Method::GET) => return Ok(html(StatusCode::OK, render::login_page(None))),
        (None, _, _) => {
            return Ok(problem(
                StatusCode::UNAUTHORIZED,
                "no_session",
                "log in on the status page first (the session may have expired)",
            ));
        }
    };
    match (&method, path) {
        (&Method::GET, "/admin" | "/admin/") => page(state, session, request.uri().query()).await,
        (&Method::POST, "/admin/logout") => {
            let form = read_form(state, request).await?;
            if let Some(refused) = csrf_refusal(&session, &form) {
                return Ok(refused);
            }
            state.sessions.remove(&id);
            Ok(back_to_page(Some(session::clear_cookie())))
        }
        (&Method::POST, "/admin/ui/replay") => {
            let form = read_form(state, request).await?;
            if let Some(refused) = csrf_refusal(&session, &form) {
                return Ok(refused);
            }
            let message = replay(state, &form).await;
            state.sessions.flash(&id, message);
            Ok(back_to_page(None))
        }
        (&Method::POST, "/admin/ui/rollback") => {
            let form = read_form(state, request).await?;
            if let Some(refused) = csrf_refusal(&session, &form) {
                return Ok(refused);
            }
            let tenant = form.get("tenant").cloned().unwrap_or_default();
            let message = match state.registry.rollback(&tenant).await {
                Ok(version) => format!(
                    "{}: rolled back to {}",
                    shorten(&tenant),
                    &version.content_hash[..version.content_hash.len().min(12)]
                ),
                Err(e) => format!("{}: rollback refused: {e}", shorten(&tenant)),
            };
            state.sessions.flash(&id, message);
            Ok(back_to_page(None))
        }
        (&Method::POST, action @ ("/admin/ui/canary/promote" | "/admin/ui/canary/abort")) => {
            let form = read_form(state, request).await?;
            if let Some(refused) = csrf_refusal(&session, &form) {
                return Ok(refused);
            }
            let tenant = form.get("tenant").cloned().unwrap_or_default();
            let promote = action.ends_with("promote");
            let ended = match promote {
                true => state.registry.promote_canary(&tenant).await,
                false => state.registry.abort_canary(&tenant).await,
            };
            let message = match ended {
                Ok(outcome) => format!(
                    "{}: canary {} {}",
                    shorten(&tenant),
                    &outcome.content_hash[..outcome.content_hash.len().min(12)],
                    if promote { "promoted" } else { "aborted" }
                ),
                Err(e) => format!("{}: refused: {e}", shorten(&tenant)),
            };
            state.sessions.flash(&id, message);
            Ok(back_to_page(None))
        }
        (&Method::POST, "/admin/ui/deploy") => {
            // The form names its tenant in its address, so that the upload slot is taken, as
            // by the API, before the body is read; held until the deploy ends.
            let tenant = query_value(request.uri().query(), "tenant").unwrap_or_default();
            let _slot = match take_upload_slot(state, &tenant) {
                Ok(slot) => slot,
                Err(refused) => return Ok(problem(refused.status, refused.code, &refused.message)),
            };
            let upload = match read_upload(state, request).await {
                Ok(upload) => upload,
                Err(response) => return Ok(response),
            };
            if let Some(refused) = csrf_refusal(&session, &upload.fields) {
                return Ok(refused);
            }
            if upload.fields.get("tenant").is_some_and(|field| *field != tenant) {
                return Ok(problem(
                    StatusCode::BAD_REQUEST,
                    "invalid_upload",
                    "the form's tenant field and its address name different tenants",
                ));
            }
            let canary = upload.fields.get("canary").map(|p| p.trim()).filter(|p| !p.is_empty());
            let canary = match canary.map(deployments::parse_canary_percent) {
                None => None,
                Some(Ok(percent)) => Some(percent),
                Some(Err(refused)) => return Ok(problem(refused.status, refused.code, &refused.message)),
            };
            let message = match upload.component {
                None => "choose a component file to deploy".to_string(),
                Some(bytes) => match state.registry.deploy(&tenant, bytes, canary).await {
                    Ok(version) => format!(
                        "{}: deployed {} ({} bytes){}",
                        shorten(&tenant),
                        &version.content_hash[..version.content_hash.len().min(12)],
                        version.size_bytes,
                        canary.map_or_else(String::new, |p| format!(" as a canary for {p}% of the tickets"))
                    ),
                    Err(e) => format!("{}: deploy refused: {e}", shorten(&tenant)),
                },
            };
            state.sessions.flash(&id, message);
            Ok(back_to_page(None))
        }
        (_, "/admin" | "/admin/") => Ok(problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this page accepts GET",
        )),
        (&Method::GET, p) if p.starts_with("/admin/ui/") || p == "/admin/logout" => Ok(problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this action accepts POST",
        )),
        _ => Ok(problem(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no page at {}", shorten(path)),
        )),
    }
}

/// `POST /admin/login`: the admin token, compared in constant time, starts a session.
/// Behind the failure limit: a source locked out is refused before its form is read.
async fn login(state: &AppState, token: &str, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let source = auth::source(&request);
    auth::refuse_locked_out(state, source, &Credential::AdminLogin)?;
    let form = read_form(state, request).await?;
    let given = form.get("token").map(String::as_str).unwrap_or("");
    if given.is_empty() || !tokens_match(given, token) {
        tracing::warn!("status page: a login with a wrong admin token was refused");
        auth::count_failure(state, source, &Credential::AdminLogin);
        return Ok(html(
            StatusCode::UNAUTHORIZED,
            render::login_page(Some("That is not the admin token.")),
        ));
    }
    let id = state.sessions.create();
    let secure = state.server.public_base_url().starts_with("https://");
    Ok(back_to_page(Some(session::set_cookie(&id, secure, SESSION_TTL))))
}

/// The form's CSRF token checked against the session's: the 403 page when it does not pass.
fn csrf_refusal(session: &SessionView, form: &HashMap<String, String>) -> Option<Response<Body>> {
    let refused = session::check_csrf(&session.csrf, form.get("csrf").map(String::as_str)).err()?;
    tracing::warn!(code = refused.code(), "status page: a form was refused");
    Some(problem(StatusCode::FORBIDDEN, refused.code(), &refused.to_string()))
}

async fn read_form(state: &AppState, request: Request<Incoming>) -> Result<HashMap<String, String>, ApiError> {
    let body = read_body_timed(state, request, FORM_LIMIT).await?;
    Ok(url::form_urlencoded::parse(&body).into_owned().collect())
}

/// A deploy form: its text fields and the component file.
struct Upload {
    fields: HashMap<String, String>,
    component: Option<Vec<u8>>,
}

/// The first value of `name` in the query string `query`.
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

async fn read_upload(state: &AppState, request: Request<Incoming>) -> Result<Upload, Response<Body>> {
    let bad = |message: String| problem(StatusCode::BAD_REQUEST, "invalid_upload", &message);
    let boundary = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok())
        .ok_or_else(|| bad("the deploy form must be sent as multipart/form-data".into()))?;
    // The component and the form's few small fields.
    let limit = state.registry.deploy_max_bytes().saturating_add(FORM_LIMIT);
    let body = deployments::read_upload(state, request, limit)
        .await
        .map_err(|e| problem(e.status, e.code, &e.message))?;
    // Splitting and copying up to `max_bytes` of form data: not on a request thread. The body
    // is in memory, so parsing it waits for nothing.
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(parse_upload(body, boundary)))
        .await
        .map_err(|e| bad(format!("the form could not be read: {e}")))?
        .map_err(bad)
}

/// The fields of the multipart form `body`, or why it cannot be read.
async fn parse_upload(body: Bytes, boundary: String) -> Result<Upload, String> {
    let mut multipart = multer::Multipart::with_reader(Cursor::new(body), boundary);
    let mut upload = Upload {
        fields: HashMap::new(),
        component: None,
    };
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| format!("unreadable form: {e}"))?
    {
        let name = field.name().unwrap_or("").to_string();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| format!("unreadable form field `{}`: {e}", shorten(&name)))?;
        if name == "component" {
            upload.component = Some(Vec::from(bytes)).filter(|b| !b.is_empty());
        } else {
            upload.fields.insert(name, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    Ok(upload)
}

/// Replays one dead letter (moved to `to_tenant` when one is chosen); the flash message.
async fn replay(state: &AppState, form: &HashMap<String, String>) -> String {
    let Some(id) = form.get("delivery_id").filter(|id| !id.is_empty()) else {
        return "no dead letter chosen".into();
    };
    let to_tenant = form.get("to_tenant").filter(|t| !t.is_empty());
    if let Some(tenant) = to_tenant
        && state.registry.snapshot().by_name(tenant).is_none()
    {
        return format!("no tenant named `{}` to move the dead letter to", shorten(tenant));
    }
    match state
        .outbox
        .store()
        .replay(DeadLetterFilter::One(id.clone()), to_tenant.map(String::as_str))
        .await
    {
        Ok(0) => format!("{} is not a dead letter (any more)", shorten(id)),
        Ok(_) => {
            state.outbox.wake();
            match to_tenant {
                Some(tenant) => format!("replayed {} to {}", shorten(id), shorten(tenant)),
                None => format!("replayed {}", shorten(id)),
            }
        }
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "status page: replay failed");
            "the store could not replay it now; try again".into()
        }
    }
}

/// `GET /admin` with a session: the page.
async fn page(state: &AppState, session: SessionView, query: Option<&str>) -> Result<Response<Body>, ApiError> {
    let mut search = Search::default();
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "tenant" => search.tenant = value.into_owned(),
            "q" => search.text = value.into_owned(),
            _ => {}
        }
    }
    let store = state.outbox.store();
    let backlog = store.backlog_by_tenant().await.map_err(super::store_unavailable)?;
    let tenant_filter = Some(search.tenant.as_str()).filter(|t| !t.is_empty());
    let letters = store
        .dead_letters(tenant_filter, DEAD_LETTERS_READ)
        .await
        .map_err(super::store_unavailable)?;
    let needle = search.text.to_lowercase();
    let matching: Vec<_> = letters
        .into_iter()
        .filter(|d| {
            needle.is_empty()
                || [Some(&d.delivery_id), Some(&d.ticket), d.last_error.as_ref()]
                    .into_iter()
                    .flatten()
                    .any(|text| text.to_lowercase().contains(&needle))
        })
        .collect();
    let now = now_ms();
    let tenants = state.registry.snapshot();
    let activity = state.outbox.activity();
    let names = tenants.all().iter().map(|t| t.name.clone()).collect();
    let mut versions = state.registry.versions_of_each(names).await.map_err(|e| {
        tracing::error!(error = format!("{e:#}"), "status page: listing versions failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the adapter versions could not be listed; see the bridge's log",
        )
    })?;
    let rows = tenants
        .all()
        .into_iter()
        .map(|t| {
            let seen = activity.tenant(&t.name);
            let versions = versions
                .remove(&t.name)
                .unwrap_or_else(|| Ok(Vec::new()))
                .map(|versions| {
                    versions
                        .into_iter()
                        .map(|v| VersionRow {
                            content_hash: v.content_hash,
                            size_bytes: v.size_bytes,
                            deployed_at: v.deployed_at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                            source: label(&v.source),
                            active: v.active,
                            canary: v.canary,
                        })
                        .collect()
                });
            TenantRow {
                name: t.name.clone(),
                owner: t.owner.clone(),
                content_hash: t.adapter.content_hash.clone(),
                world: format!("{}@{}", crate::runtime::WIT_PACKAGE, t.adapter.wit_version),
                loaded_at: t.loaded_at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                source: format!(
                    "{} ({})",
                    t.adapter
                        .path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    label(&state.registry.adapter_source(t))
                ),
                last_success: seen.last_success,
                per_minute: seen.per_minute(now),
                last_failure: seen.last_failure,
                calls: t.host.stats.calls.load(Ordering::Relaxed),
                errors: t.host.stats.errors.load(Ordering::Relaxed)
                    + t.host.stats.adapter_errors.load(Ordering::Relaxed),
                cpu_micros: t.host.stats.cpu_micros.load(Ordering::Relaxed),
                breakers: [
                    ("incoming", t.host.breakers.incoming.view()),
                    ("webhooks", t.host.breakers.webhooks.view()),
                ],
                backlog: backlog.iter().find(|b| b.tenant == t.name).cloned(),
                versions,
                canary: state.registry.canary_status(&t.name),
            }
        })
        .collect();
    let history = state
        .registry
        .history()
        .into_iter()
        .map(|event| HistoryRow {
            at: event.at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
            tenant: event.tenant.unwrap_or_default(),
            kind: label(&event.kind),
            detail: [event.content_hash, event.reason]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": "),
        })
        .collect();
    let data = PageData {
        csrf: session.csrf,
        flash: session.flash,
        now_ms: now,
        tenants: rows,
        dead_letters_matching: matching.len(),
        dead_letters: matching.into_iter().take(DEAD_LETTERS_SHOWN).collect(),
        search,
        history,
    };
    Ok(html(StatusCode::OK, render::page(&data)))
}

/// How a serialized unit enum (`deployed`, `reload-rejected`) names itself.
fn label(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}
