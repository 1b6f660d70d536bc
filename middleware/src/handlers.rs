//! The REST handlers under `/api/v1` (each documented for the OpenAPI document by its
//! `#[utoipa::path]`), the event stream, and the operational endpoints.

use crate::accounts::{self, AccountView};
use crate::app::AppState;
use crate::auth::{self, need_admin, need_staff, Role};
use crate::db::{AuditRow, Page, UserRow};
use crate::error::{AppError, ErrorBody};
use crate::nodes::NodeStatus;
use crate::txsvc::{Caller, NewMint, NewTx, Request, TxStats, TxView};
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "bpu gateway",
        description = "REST API of the bpu gateway: users and roles, accounts, token transfers \
                       with pre-confirmation, events, the network view. Errors are always \
                       `{\"error\": {\"code\", \"message\"}}`.",
        version = "1.0.0"
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        c.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(auth::COOKIE))),
        );
    }
}

/// The documented API.
pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(create_user, list_users))
        .routes(routes!(get_user, patch_user))
        .routes(routes!(create_account, list_accounts))
        .routes(routes!(get_account, patch_account))
        .routes(routes!(account_transactions))
        .routes(routes!(create_transaction, list_transactions))
        .routes(routes!(create_mint))
        .routes(routes!(get_transaction))
        .routes(routes!(network))
        .routes(routes!(stats))
        .routes(routes!(events_page))
        .routes(routes!(events_stream))
        .routes(routes!(audit_log))
}

/// `/metrics`, `/healthz`, `/readyz` (public: no secrets, for scrapers and orchestrators).
pub fn ops_router() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
}

// ---- extractors ---------------------------------------------------------------------------

/// JSON body with typed errors: syntax and type errors are 400, a wrong content type 415, a
/// body over the limit 413; unknown fields are refused by the types.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, AppError> {
        let v = match Json::<serde_json::Value>::from_request(req, state).await {
            Ok(Json(v)) => v,
            Err(JsonRejection::JsonSyntaxError(e)) => {
                return Err(AppError::bad("invalid_json", e.body_text()))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => {
                return Err(AppError::UnsupportedMedia)
            }
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(AppError::TooLarge)
            }
            Err(e) => return Err(AppError::bad("invalid_body", e.body_text())),
        };
        // Serde would also take a struct as an array of its fields; the API takes objects.
        if !v.is_object() {
            return Err(AppError::bad(
                "invalid_body",
                "the body must be a JSON object",
            ));
        }
        serde_json::from_value(v)
            .map(ApiJson)
            .map_err(|e| AppError::bad("invalid_body", e.to_string()))
    }
}

/// Pagination: rows after `after` (the `next` of the previous page), at most `limit` (1–500,
/// default 50).
#[derive(Deserialize, IntoParams, Debug)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    #[param(minimum = 0)]
    pub after: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

impl PageQuery {
    fn page(&self) -> Result<Page, AppError> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=500).contains(&limit) {
            return Err(AppError::bad("bad_limit", "limit is between 1 and 500"));
        }
        if self.after.is_some_and(|a| a < 0) {
            return Err(AppError::bad("bad_cursor", "after is a cursor, 0 or more"));
        }
        Ok(Page {
            after: self.after.unwrap_or(0),
            limit,
        })
    }
}

/// `next` for a page whose last key is `last`, when the page is full.
fn next_of(len: usize, p: Page, last: Option<i64>) -> Option<i64> {
    (len as i64 == p.limit).then_some(last).flatten()
}

// ---- auth ---------------------------------------------------------------------------------

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub name: String,
    pub password: String,
    /// Set an HttpOnly session cookie instead of returning the token (the dashboard).
    #[serde(default)]
    pub session: bool,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// The bearer token (absent for a cookie session).
    pub token: Option<String>,
    pub expires_ms: i64,
    pub user: UserView,
}

#[derive(Serialize, Deserialize, ToSchema, Clone)]
pub struct UserView {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl From<&UserRow> for UserView {
    fn from(u: &UserRow) -> UserView {
        UserView {
            id: u.id,
            name: u.name.clone(),
            role: Role::parse(&u.role).unwrap_or(Role::User),
            disabled: u.disabled,
            created_ms: u.created_ms,
            updated_ms: u.updated_ms,
        }
    }
}

/// A hash to compare against when the user does not exist, so both cases take as long.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| crate::secrets::hash_password("not a password").unwrap_or_default())
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Wrong name or password, or a disabled user", body = ErrorBody),
        (status = 429, description = "Too many failed logins for this name or address", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON (Content-Type)", body = ErrorBody),
    ))]
async fn login(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, AppError> {
    let keys = [format!("user:{}", req.name), format!("ip:{}", peer.ip())];
    for k in &keys {
        if let Some(s) = st.throttle.locked(k) {
            metrics::counter!("gateway_logins_total", "result" => "throttled").increment(1);
            return Err(AppError::Throttled(s));
        }
    }
    let user = st.db.user_by_name(&req.name).await?;
    let hash = user
        .as_ref()
        .map_or_else(|| dummy_hash().to_string(), |u| u.pw_hash.clone());
    let pw = req.password.clone();
    let ok = tokio::task::spawn_blocking(move || crate::secrets::check_password(&pw, &hash))
        .await
        .map_err(AppError::internal)?;
    let user = match user {
        Some(u) if ok && !u.disabled => u,
        _ => {
            for k in &keys {
                st.throttle.fail(k);
            }
            metrics::counter!("gateway_logins_total", "result" => "failed").increment(1);
            return Err(AppError::BadCredentials(
                "wrong user name or password (or the user is disabled)".into(),
            ));
        }
    };
    for k in &keys {
        st.throttle.clear(k);
    }
    metrics::counter!("gateway_logins_total", "result" => "ok").increment(1);
    let (token, hash) = crate::secrets::new_token();
    let expires_ms = crate::db::now_ms() + st.cfg.session_ttl.as_millis() as i64;
    let kind = if req.session { "session" } else { "bearer" };
    st.db.insert_token(&hash, user.id, kind, expires_ms).await?;
    let body = LoginResponse {
        token: (!req.session).then(|| token.clone()),
        expires_ms,
        user: UserView::from(&user),
    };
    let mut r = Json(body).into_response();
    if req.session {
        let c = format!(
            "{}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
            auth::COOKIE,
            st.cfg.session_ttl.as_secs()
        );
        r.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_str(&c).map_err(AppError::internal)?,
        );
    }
    Ok(r)
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 204, description = "The token or session is revoked"),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 400, description = "Malformed path, query or header", body = ErrorBody),
    ))]
async fn logout(
    State(st): State<AppState>,
    _caller: Caller,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let mut parts = axum::http::Request::new(()).into_parts().0;
    parts.headers = headers;
    if let Some(t) = auth::request_token(&parts) {
        let h = crate::secrets::token_hash(&t);
        st.db.revoke_token(&h).await?;
        st.sessions.forget_token(&h);
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
            auth::COOKIE
        ))
        .map_err(AppError::internal)?,
    );
    Ok(r)
}

#[utoipa::path(get, path = "/api/v1/me", tag = "auth",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The calling user", body = UserView),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 400, description = "Malformed path, query or header", body = ErrorBody),
    ))]
async fn me(State(st): State<AppState>, caller: Caller) -> Result<Json<UserView>, AppError> {
    let u = st
        .db
        .user(caller.user)
        .await?
        .ok_or(AppError::Unauthorized)?;
    Ok(Json(UserView::from(&u)))
}

// ---- users --------------------------------------------------------------------------------

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    #[schema(pattern = "^[A-Za-z0-9._@-]{1,64}$", min_length = 1, max_length = 64)]
    pub name: String,
    pub role: Role,
    #[schema(min_length = 8, max_length = 256)]
    pub password: String,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    #[schema(min_length = 8, max_length = 256)]
    pub password: Option<String>,
    /// Needed when users change their own password.
    pub current_password: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<UserView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<i64>,
}

/// Creates a user (offline too: `bpu gateway user add`).
pub async fn add_user(
    st_db: &crate::db::Db,
    name: &str,
    role: Role,
    password: &str,
) -> Result<UserRow, AppError> {
    auth::check_name("user", name)?;
    auth::check_new_password(password)?;
    let pw = password.to_string();
    let hash = tokio::task::spawn_blocking(move || crate::secrets::hash_password(&pw))
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)?;
    let id = st_db
        .insert_user(name, role.as_str(), &hash)
        .await?
        .ok_or_else(|| AppError::Conflict("name_taken", format!("a user {name:?} exists")))?;
    st_db
        .user(id)
        .await?
        .ok_or_else(|| AppError::internal("user vanished"))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users",
    security(("bearer" = []), ("session" = [])),
    request_body = NewUser,
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 400, description = "Bad name, role or password", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON (Content-Type)", body = ErrorBody),
    ))]
async fn create_user(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<UserView>), AppError> {
    need_admin(&caller)?;
    let u = add_user(&st.db, &req.name, req.role, &req.password).await?;
    st.db
        .audit(
            caller.user,
            "user.create",
            &format!("user:{}", u.id),
            &format!("name={} role={}", u.name, u.role),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(UserView::from(&u))))
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    security(("bearer" = []), ("session" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "Users by id", body = UserPage),
        (status = 400, description = "Bad paging", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn list_users(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Json<UserPage>, AppError> {
    need_admin(&caller)?;
    let p = q.page()?;
    let rows = st.db.users(p).await?;
    Ok(Json(UserPage {
        next: next_of(rows.len(), p, rows.last().map(|u| u.id)),
        items: rows.iter().map(UserView::from).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users",
    security(("bearer" = []), ("session" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "No such user (or not yours to see)", body = ErrorBody),
        (status = 400, description = "Malformed path, query or header", body = ErrorBody),
    ))]
async fn get_user(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<UserView>, AppError> {
    if caller.role != Role::Admin && caller.user != id {
        return Err(AppError::NotFound(format!("user {id}")));
    }
    let u = st
        .db
        .user(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("user {id}")))?;
    Ok(Json(UserView::from(&u)))
}

#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users",
    security(("bearer" = []), ("session" = [])),
    params(("id" = i64, Path, description = "User id")),
    request_body = UserPatch,
    responses(
        (status = 200, description = "Updated", body = UserView),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Only admins change roles and disable users", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "The change would leave no active admin", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON (Content-Type)", body = ErrorBody),
    ))]
async fn patch_user(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    ApiJson(req): ApiJson<UserPatch>,
) -> Result<Json<UserView>, AppError> {
    let admin = caller.role == Role::Admin;
    if !admin && caller.user != id {
        return Err(AppError::NotFound(format!("user {id}")));
    }
    let mut u = st
        .db
        .user(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("user {id}")))?;
    if !admin && (req.role.is_some() || req.disabled.is_some()) {
        return Err(AppError::forbidden(
            "only admins change roles and disable users",
        ));
    }
    if let Some(pw) = &req.password {
        auth::check_new_password(pw)?;
        if !admin || caller.user == id {
            let cur = req.current_password.clone().unwrap_or_default();
            let h = u.pw_hash.clone();
            let ok = tokio::task::spawn_blocking(move || crate::secrets::check_password(&cur, &h))
                .await
                .map_err(AppError::internal)?;
            if !ok {
                return Err(AppError::forbidden("current_password is wrong"));
            }
        }
        let pw = pw.clone();
        u.pw_hash = tokio::task::spawn_blocking(move || crate::secrets::hash_password(&pw))
            .await
            .map_err(AppError::internal)?
            .map_err(AppError::internal)?;
    }
    let was_active_admin = u.role == "admin" && !u.disabled;
    if let Some(r) = req.role {
        u.role = r.as_str().into();
    }
    if let Some(d) = req.disabled {
        u.disabled = d;
    }
    if was_active_admin && (u.role != "admin" || u.disabled) {
        let others = st
            .db
            .users(Page {
                after: 0,
                limit: i64::MAX,
            })
            .await?
            .iter()
            .filter(|x| x.id != id && x.role == "admin" && !x.disabled)
            .count();
        if others == 0 {
            return Err(AppError::Conflict(
                "last_admin",
                "this would leave the gateway without an active admin".into(),
            ));
        }
    }
    st.db.update_user(&u).await?;
    if req.disabled == Some(true) || req.password.is_some() {
        st.db.revoke_user_tokens(id).await?;
    }
    st.sessions.forget_user(id);
    if admin {
        let detail = format!(
            "role={:?} disabled={:?} password={}",
            req.role.map(Role::as_str),
            req.disabled,
            req.password.is_some()
        );
        st.db
            .audit(caller.user, "user.update", &format!("user:{id}"), &detail)
            .await?;
    }
    let u = st
        .db
        .user(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("user {id}")))?;
    Ok(Json(UserView::from(&u)))
}

// ---- accounts -----------------------------------------------------------------------------

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    #[schema(pattern = "^[A-Za-z0-9._@-]{1,64}$", min_length = 1, max_length = 64)]
    pub name: String,
    /// The owning user (operators and admins; default: the caller).
    pub owner: Option<i64>,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountPatch {
    #[schema(pattern = "^[A-Za-z0-9._@-]{1,64}$", min_length = 1, max_length = 64)]
    pub name: Option<String>,
    /// Operators and admins: a disabled account cannot send (it still receives).
    pub disabled: Option<bool>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AccountPage {
    pub items: Vec<AccountView>,
    pub next: Option<i64>,
}

/// Account list filter.
#[derive(Deserialize, IntoParams, Debug)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccountQuery {
    #[param(minimum = 0)]
    pub after: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// Operators and admins: only this user's accounts.
    pub owner: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts",
    security(("bearer" = []), ("session" = [])),
    request_body = NewAccount,
    responses(
        (status = 201, description = "Created: a new ledger identity, member of the channel", body = AccountView),
        (status = 400, description = "Bad name", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Users create accounts only for themselves", body = ErrorBody),
        (status = 404, description = "No such owner", body = ErrorBody),
        (status = 409, description = "Too many accounts for this user", body = ErrorBody),
        (status = 503, description = "The ledger did not add the member in time; the account is finished in the background", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON (Content-Type)", body = ErrorBody),
    ))]
async fn create_account(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<NewAccount>,
) -> Result<(StatusCode, Json<AccountView>), AppError> {
    auth::check_name("account", &req.name)?;
    let owner = req.owner.unwrap_or(caller.user);
    if owner != caller.user {
        need_staff(&caller)?;
    }
    let o = st
        .db
        .user(owner)
        .await?
        .filter(|u| !u.disabled)
        .ok_or_else(|| AppError::NotFound(format!("user {owner}")))?;
    if st.db.count_accounts(o.id).await? >= st.cfg.accounts_per_user {
        return Err(AppError::Conflict(
            "too_many_accounts",
            format!(
                "user {} has {} accounts already",
                o.id, st.cfg.accounts_per_user
            ),
        ));
    }
    let k = accounts::new_key(&st.keys).map_err(AppError::internal)?;
    let id = st
        .db
        .insert_account(o.id, &req.name, &k.ledger_id, &k.sec1, &k.sealed)
        .await?;
    let row = st
        .db
        .account(id)
        .await?
        .ok_or_else(|| AppError::internal("account vanished"))?;
    st.creator
        .create(row, Duration::from_secs(60))
        .await
        .map_err(|e| AppError::Unavailable(st.nodes.scrub(&e)))?;
    let row = st
        .db
        .account(id)
        .await?
        .ok_or_else(|| AppError::internal("account vanished"))?;
    if caller.is_staff() {
        st.db
            .audit(
                caller.user,
                "account.create",
                &format!("account:{id}"),
                &format!("owner={owner} name={}", req.name),
            )
            .await?;
    }
    metrics::counter!("gateway_accounts_created_total").increment(1);
    Ok((StatusCode::CREATED, Json(accounts::view_of(&row, &st.tx))))
}

#[utoipa::path(get, path = "/api/v1/accounts", tag = "accounts",
    security(("bearer" = []), ("session" = [])),
    params(AccountQuery),
    responses(
        (status = 200, description = "Your accounts (operators and admins: all, or one owner's)", body = AccountPage),
        (status = 400, description = "Bad paging", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ))]
async fn list_accounts(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<AccountQuery>,
) -> Result<Json<AccountPage>, AppError> {
    let p = PageQuery {
        after: q.after,
        limit: q.limit,
    }
    .page()?;
    let owner = if caller.is_staff() {
        q.owner
    } else {
        Some(caller.user)
    };
    let rows = st.db.accounts(owner, p).await?;
    Ok(Json(AccountPage {
        next: next_of(rows.len(), p, rows.last().map(|a| a.id)),
        items: rows.iter().map(|r| accounts::view_of(r, &st.tx)).collect(),
    }))
}

async fn visible_account(
    st: &AppState,
    caller: &Caller,
    id: i64,
) -> Result<crate::db::AccountRow, AppError> {
    st.db
        .account(id)
        .await?
        .filter(|a| a.owner == caller.user || caller.is_staff())
        .ok_or_else(|| AppError::NotFound(format!("account {id}")))
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}", tag = "accounts",
    security(("bearer" = []), ("session" = [])),
    params(("id" = i64, Path, description = "Account id")),
    responses(
        (status = 200, description = "Balance, pending amount, what is available", body = AccountView),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "No such account (or not yours)", body = ErrorBody),
        (status = 400, description = "Malformed path, query or header", body = ErrorBody),
    ))]
async fn get_account(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<AccountView>, AppError> {
    let row = visible_account(&st, &caller, id).await?;
    Ok(Json(accounts::view_of(&row, &st.tx)))
}

#[utoipa::path(patch, path = "/api/v1/accounts/{id}", tag = "accounts",
    security(("bearer" = []), ("session" = [])),
    params(("id" = i64, Path, description = "Account id")),
    request_body = AccountPatch,
    responses(
        (status = 200, description = "Updated", body = AccountView),
        (status = 400, description = "Bad name", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Only operators and admins disable accounts", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 409, description = "The account is still being created", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON (Content-Type)", body = ErrorBody),
    ))]
async fn patch_account(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    ApiJson(req): ApiJson<AccountPatch>,
) -> Result<Json<AccountView>, AppError> {
    let row = visible_account(&st, &caller, id).await?;
    if req.disabled.is_some() {
        need_staff(&caller)?;
    }
    if row.state == "creating" {
        return Err(AppError::Conflict(
            "account_creating",
            format!("account {id} is still being created"),
        ));
    }
    let name = match &req.name {
        Some(n) => {
            auth::check_name("account", n)?;
            n.clone()
        }
        None => row.name.clone(),
    };
    let state = match req.disabled {
        Some(true) => "disabled",
        Some(false) => "active",
        None => row.state.as_str(),
    };
    st.db.set_account(id, &name, state, None).await?;
    st.tx.set_account_active(id, state == "active");
    if caller.is_staff() {
        st.db
            .audit(
                caller.user,
                "account.update",
                &format!("account:{id}"),
                &format!("name={name} state={state}"),
            )
            .await?;
    }
    let row = visible_account(&st, &caller, id).await?;
    Ok(Json(accounts::view_of(&row, &st.tx)))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TxPage {
    pub items: Vec<TxView>,
    pub next: Option<i64>,
}

fn tx_page(rows: Vec<crate::db::TxRow>, p: Page) -> TxPage {
    TxPage {
        next: next_of(rows.len(), p, rows.last().map(|t| t.seq)),
        items: rows.iter().map(TxView::from).collect(),
    }
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/transactions", tag = "accounts",
    security(("bearer" = []), ("session" = [])),
    params(("id" = i64, Path, description = "Account id"), PageQuery),
    responses(
        (status = 200, description = "The account's history, oldest first", body = TxPage),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "No such account (or not yours)", body = ErrorBody),
        (status = 400, description = "Malformed path, query or header", body = ErrorBody),
    ))]
async fn account_transactions(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    Query(q): Query<PageQuery>,
) -> Result<Json<TxPage>, AppError> {
    visible_account(&st, &caller, id).await?;
    let p = q.page()?;
    let rows = st.db.txs(None, Some(id), p).await?;
    Ok(Json(tx_page(rows, p)))
}

// ---- transactions -------------------------------------------------------------------------

#[utoipa::path(post, path = "/api/v1/transactions", tag = "transactions",
    security(("bearer" = []), ("session" = [])),
    request_body = NewTx,
    params(("Idempotency-Key" = String, Header, min_length = 1, max_length = 200, pattern = "^[!-~]([ -~]*[!-~])?$", description = "Unique per request (1–200 ASCII characters); the same key again answers the same transaction")),
    responses(
        (status = 202, description = "Pre-confirmed: checked, reserved and stored; it will commit", body = TxView),
        (status = 400, description = "Malformed request or missing Idempotency-Key", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "No such account (or not yours)", body = ErrorBody),
        (status = 409, description = "Insufficient funds net of pending transfers, or a disabled account", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorBody),
        (status = 503, description = "Not stored; retry with the same key", body = ErrorBody),
        (status = 415, description = "The body is not JSON (Content-Type)", body = ErrorBody),
    ))]
async fn create_transaction(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<NewTx>,
) -> Result<(StatusCode, Json<TxView>), AppError> {
    preconfirm(&st, &caller, &headers, &Request::from(&req)).await
}

#[utoipa::path(post, path = "/api/v1/mints", tag = "transactions",
    security(("bearer" = []), ("session" = [])),
    request_body = NewMint,
    params(("Idempotency-Key" = String, Header, min_length = 1, max_length = 200, pattern = "^[!-~]([ -~]*[!-~])?$", description = "Unique per request; the same key again answers the same transaction")),
    responses(
        (status = 202, description = "Pre-confirmed: new tokens will be credited to `to`", body = TxView),
        (status = 400, description = "Malformed request or missing Idempotency-Key", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Minting needs the operator or admin role", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON (Content-Type)", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorBody),
        (status = 503, description = "Not stored; retry with the same key", body = ErrorBody),
    ))]
async fn create_mint(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<NewMint>,
) -> Result<(StatusCode, Json<TxView>), AppError> {
    preconfirm(&st, &caller, &headers, &Request::from(&req)).await
}

async fn preconfirm(
    st: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    req: &Request,
) -> Result<(StatusCode, Json<TxView>), AppError> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            AppError::bad(
                "missing_idempotency_key",
                "send an Idempotency-Key header (a unique string per request)",
            )
        })?;
    let (_, v) = st.tx.submit(caller, key, req).await?;
    Ok((StatusCode::ACCEPTED, Json(v)))
}

#[derive(Deserialize, IntoParams, Debug)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TxQuery {
    /// `committed`: wait until the transaction is final (committed or rejected).
    #[param(pattern = "^committed$")]
    pub wait: Option<String>,
    /// How long to wait, milliseconds (default 10,000, at most 60,000).
    #[param(minimum = 0, maximum = 60000)]
    pub timeout_ms: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/transactions/{id}", tag = "transactions",
    security(("bearer" = []), ("session" = [])),
    params(("id" = String, Path, description = "Transaction id"), TxQuery),
    responses(
        (status = 200, description = "The transaction (with `wait=committed`: once final, or its state at the timeout)", body = TxView),
        (status = 400, description = "Bad wait or timeout", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "No such transaction (or not yours)", body = ErrorBody),
    ))]
async fn get_transaction(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<TxQuery>,
) -> Result<Json<TxView>, AppError> {
    let visible = |r: &crate::db::TxRow| r.user_id == caller.user || caller.is_staff();
    let row = match st.tx.row(&id) {
        Some(r) => Some(r),
        None => st.db.tx(&id).await?,
    }
    .filter(visible)
    .ok_or_else(|| AppError::NotFound(format!("transaction {id}")))?;
    let t = q.timeout_ms.unwrap_or(10_000);
    if t > 60_000 {
        return Err(AppError::bad("bad_timeout", "timeout_ms is at most 60000"));
    }
    match q.wait.as_deref() {
        None => return Ok(Json(TxView::from(&row))),
        Some("committed") => {}
        Some(other) => {
            return Err(AppError::bad(
                "bad_wait",
                format!("wait={other:?}: the only value is `committed`"),
            ))
        }
    }
    st.tx.wait_final(&id, Duration::from_millis(t)).await;
    let row = match st.tx.row(&id) {
        Some(r) => r,
        None => st
            .db
            .tx(&id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("transaction {id}")))?,
    };
    Ok(Json(TxView::from(&row)))
}

#[utoipa::path(get, path = "/api/v1/transactions", tag = "transactions",
    security(("bearer" = []), ("session" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "Your transactions (operators and admins: all), oldest first", body = TxPage),
        (status = 400, description = "Bad paging", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ))]
async fn list_transactions(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Json<TxPage>, AppError> {
    let p = q.page()?;
    let user = (!caller.is_staff()).then_some(caller.user);
    let rows = st.db.txs(user, None, p).await?;
    Ok(Json(tx_page(rows, p)))
}

// ---- network, stats, audit ----------------------------------------------------------------

#[derive(Serialize, Deserialize, ToSchema)]
pub struct NetworkView {
    pub channel: String,
    /// The node the gateway uses now.
    pub primary: Option<usize>,
    /// Times the gateway moved to another node.
    pub switches: u64,
    /// The last block the gateway processed.
    pub gateway_height: u64,
    pub nodes: Vec<NodeStatus>,
}

#[utoipa::path(get, path = "/api/v1/network", tag = "network",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "Each node's height, role and health", body = NetworkView),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 400, description = "Malformed path, query or header", body = ErrorBody),
    ))]
async fn network(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<NetworkView>, AppError> {
    need_admin(&caller)?;
    Ok(Json(NetworkView {
        channel: st.channel.clone(),
        primary: st.nodes.primary(),
        switches: st.nodes.switches(),
        gateway_height: st.tx.height(),
        nodes: st.nodes.status(),
    }))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct StatsView {
    pub tx: TxStats,
    /// Each node's height (null when down), by node number; no addresses.
    pub heights: Vec<Option<u64>>,
    pub uptime_s: u64,
}

#[utoipa::path(get, path = "/api/v1/stats", tag = "network",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "Live figures for the dashboard", body = StatsView),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 400, description = "Malformed path, query or header", body = ErrorBody),
    ))]
async fn stats(State(st): State<AppState>, _caller: Caller) -> Json<StatsView> {
    Json(StatsView {
        tx: st.tx.stats(),
        heights: st.nodes.heights(),
        uptime_s: st.started.elapsed().as_secs(),
    })
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AuditView {
    pub seq: i64,
    pub at_ms: i64,
    /// The admin or operator who acted.
    pub actor: i64,
    pub action: String,
    pub target: String,
    pub detail: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditView>,
    pub next: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "users",
    security(("bearer" = []), ("session" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "Admin and operator actions, oldest first", body = AuditPage),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 400, description = "Malformed path, query or header", body = ErrorBody),
    ))]
async fn audit_log(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Json<AuditPage>, AppError> {
    need_admin(&caller)?;
    let p = q.page()?;
    let rows: Vec<AuditRow> = st.db.audit_log(p).await?;
    Ok(Json(AuditPage {
        next: next_of(rows.len(), p, rows.last().map(|a| a.seq)),
        items: rows
            .into_iter()
            .map(|a| AuditView {
                seq: a.seq,
                at_ms: a.at_ms,
                actor: a.actor,
                action: a.action,
                target: a.target,
                detail: a.detail,
            })
            .collect(),
    }))
}

// ---- events -------------------------------------------------------------------------------

/// One event of the stream.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// The cursor: resume after it with `after` (or SSE's `Last-Event-ID`).
    pub seq: i64,
    pub at_ms: i64,
    /// `tx` (a gateway transaction changed state) or `contract` (a contract event in a block).
    pub kind: String,
    /// `{"type": "tx", "tx": Transaction}` or `{"type": "contract", "height", "index",
    /// "ledger_tx_id", "contract", "name", "data", "from", "to", "amount"}`.
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
}

/// One Server-Sent Events message of `GET /api/v1/events`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SseMessage {
    /// The event's cursor (`seq`).
    pub id: Option<String>,
    /// The event's kind (`tx` or `contract`).
    pub event: Option<String>,
    /// An Event as JSON (absent on keep-alive comments).
    pub data: Option<String>,
    pub retry: Option<i64>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<EventView>,
    pub next: Option<i64>,
}

fn event_view(e: crate::db::EventRow) -> EventView {
    EventView {
        seq: e.seq,
        at_ms: e.at_ms,
        kind: e.kind,
        body: serde_json::from_str(&e.body).unwrap_or(serde_json::Value::Null),
    }
}

#[utoipa::path(get, path = "/api/v1/events/page", tag = "events",
    security(("bearer" = []), ("session" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "Events after the cursor, in order (yours; operators and admins: all)", body = EventPage),
        (status = 400, description = "Bad paging", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ))]
async fn events_page(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Json<EventPage>, AppError> {
    let p = q.page()?;
    let user = (!caller.is_staff()).then_some(caller.user);
    let rows = st.db.events_after(p.after, user, p.limit).await?;
    let next = next_of(rows.len(), p, rows.last().map(|e| e.seq));
    Ok(Json(EventPage {
        items: rows.into_iter().map(event_view).collect(),
        next,
    }))
}

/// Where an event stream starts.
#[derive(Deserialize, IntoParams, Debug)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Start after this cursor (0: from the beginning; default: only new events). The
    /// `Last-Event-ID` header of a reconnecting EventSource takes precedence.
    #[param(minimum = 0)]
    pub after: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    security(("bearer" = []), ("session" = [])),
    params(StreamQuery),
    responses(
        (status = 200, description = "Server-Sent Events: `id` is the cursor, `event` the kind, `data` an Event as JSON; every event after the cursor exactly once, in order", content_type = "text/event-stream", body = SseMessage),
        (status = 400, description = "Bad cursor", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ))]
async fn events_stream(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let last_id = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| AppError::bad("bad_cursor", "Last-Event-ID must be a number"))?,
        ),
        None => None,
    };
    if let Some(a) = last_id.or(q.after).filter(|a| *a < 0) {
        return Err(AppError::bad(
            "bad_cursor",
            format!("cursor {a}: 0 or more"),
        ));
    }
    let watch = st.db.events_watch();
    let after = last_id.or(q.after).unwrap_or(*watch.borrow());
    let user = (!caller.is_staff()).then_some(caller.user);
    let db = st.db.clone();
    let s = stream::unfold((after, watch), move |(after, mut watch)| {
        let db = db.clone();
        async move {
            loop {
                match db.events_after(after, user, 256).await {
                    Ok(rows) if !rows.is_empty() => {
                        let last = rows.last().map_or(after, |e| e.seq);
                        let evs: Vec<Result<Event, Infallible>> = rows
                            .into_iter()
                            .map(|e| {
                                let id = e.seq.to_string();
                                let kind = e.kind.clone();
                                let data =
                                    serde_json::to_string(&event_view(e)).unwrap_or_default();
                                Ok(Event::default().id(id).event(kind).data(data))
                            })
                            .collect();
                        return Some((stream::iter(evs), (last, watch)));
                    }
                    Ok(_) => {
                        // Wait for a newer commit (or re-check every 15 s).
                        let _ =
                            tokio::time::timeout(Duration::from_secs(15), watch.changed()).await;
                    }
                    Err(e) => {
                        tracing::warn!("event stream: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    })
    .flatten();
    Ok(Sse::new(s).keep_alive(KeepAlive::default()))
}

// ---- operations ---------------------------------------------------------------------------

async fn metrics(State(st): State<AppState>) -> Response {
    let s = st.tx.stats();
    metrics::gauge!("gateway_outbox_open").set(s.open as f64);
    metrics::gauge!("gateway_outbox_queued").set(s.queued as f64);
    metrics::gauge!("gateway_db_writer_queue").set(st.db.writer_depth() as f64);
    for n in st.nodes.status() {
        let i = n.index.to_string();
        metrics::gauge!("gateway_node_up", "node" => i.clone()).set(if n.healthy {
            1.0
        } else {
            0.0
        });
        metrics::gauge!("gateway_node_primary", "node" => i.clone()).set(if n.role == "primary" {
            1.0
        } else {
            0.0
        });
        if let Some(h) = n.height {
            metrics::gauge!("gateway_node_height", "node" => i).set(h as f64);
        }
    }
    let mut r = st.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

async fn readyz(State(st): State<AppState>) -> Response {
    if st.nodes.primary().is_some() {
        "ready".into_response()
    } else {
        AppError::Unavailable("no healthy node".into()).into_response()
    }
}
