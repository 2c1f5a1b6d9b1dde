//! HTTP: MQTT over WebSocket at `/$iothub/websocket`, the IoT Hub service REST API, and
//! devhub's own endpoints under `/devhub/`.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::handler::HandlerWithoutStateExt;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use futures_util::Stream;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use twinscope_proto::iothub::SymmetricKey;
use twinscope_proto::iothub::{DeviceId, Identity, PropertyBag};

use crate::guard::Exposure;
use crate::hub::{ErrorCode, ServiceError};
use crate::net::{now_ms, serve_websocket, Shared};
use crate::rest::{C2dAccepted, IdentityRequest, MethodInvocation, MethodResult, TwinUpdate};
use crate::store::EventRecord;

/// Settings the HTTP layer needs beyond the hub.
#[derive(Clone, Default)]
pub struct HttpConfig {
    /// The demo device, if `--demo`.
    pub demo_device: Option<String>,
    /// Directory of the built web app, served at `/`.
    pub app_dir: Option<PathBuf>,
    /// The names and origins devhub answers to.
    pub exposure: Exposure,
}

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    cfg: HttpConfig,
}

/// The router for one listener: every request passes the [`Exposure`] check first, and
/// every error answer, axum's own rejections included, has IoT Hub's JSON shape.
pub fn router(shared: Arc<Shared>, cfg: HttpConfig) -> Router {
    let app_dir = cfg.app_dir.clone();
    let exposure = Arc::new(cfg.exposure.clone());
    let state = AppState { shared, cfg };
    let mut r = Router::new()
        .route("/$iothub/websocket", get(websocket))
        .route("/devices", get(list_devices).post(bulk_registry))
        // The Node service SDK's Registry.list asks for `/devices/`.
        .route("/devices/", get(list_devices))
        .route(
            "/devices/{id}",
            put(put_identity).get(get_identity).delete(delete_identity),
        )
        .route("/devices/{id}/modules", get(list_modules))
        .route(
            "/devices/{id}/modules/{mid}",
            put(put_identity).get(get_identity).delete(delete_identity),
        )
        .route("/devices/{id}/messages/deviceBound", post(send_c2d))
        .route("/devices/{id}/commands", delete(purge_c2d))
        .route(
            "/twins/{id}",
            get(get_twin).patch(patch_twin).put(replace_twin),
        )
        .route(
            "/twins/{id}/modules/{mid}",
            get(get_twin).patch(patch_twin).put(replace_twin),
        )
        .route("/twins/{id}/methods", post(invoke_method))
        .route("/twins/{id}/modules/{mid}/methods", post(invoke_method))
        .route(
            "/enrollments/{id}",
            put(put_enrollment)
                .get(get_enrollment)
                .delete(delete_enrollment),
        )
        .route(
            "/enrollmentGroups/{id}",
            put(put_enrollment_group)
                .get(get_enrollment_group)
                .delete(delete_enrollment_group),
        )
        .route("/devices/query", post(query_twins))
        .route("/statistics/devices", get(registry_statistics))
        .route("/statistics/service", get(service_statistics))
        .route("/devhub/health", get(|| async { "ok" }))
        .route("/devhub/demo", get(demo))
        .route("/devhub/events", get(events))
        .route("/devhub/events/stream", get(events_stream))
        .route("/devhub/faults", post(faults))
        .with_state(state);
    r = match app_dir {
        Some(dir) => r.fallback_service(
            tower_http::services::ServeDir::new(dir).not_found_service(not_found.into_service()),
        ),
        None => r.fallback(not_found),
    };
    let cors_exposure = exposure.clone();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, parts| {
            let host = parts
                .headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            origin
                .to_str()
                .is_ok_and(|o| cors_exposure.origin_allowed(o, host))
        }))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([
            header::ETAG,
            header::HeaderName::from_static("x-ms-continuation"),
            header::HeaderName::from_static("x-ms-item-type"),
        ])
        .max_age(Duration::from_secs(600));
    r.layer(cors)
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let exposure = exposure.clone();
            async move {
                match exposure.check(req.method(), req.uri().path(), req.headers()) {
                    Ok(()) => next.run(req).await,
                    Err(e) => ApiError(e).into_response(),
                }
            }
        }))
        .layer(middleware::map_response(hub_shaped_errors))
}

/// `404` for a route devhub does not have.
async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError(ServiceError::new(
        ErrorCode::GenericNotFound,
        format!("devhub has no route {}", uri.path()),
    ))
}

/// Gives axum's own plain-text error answers (a body over the size limit, an undecodable
/// path or query, a method a route does not take, a bad WebSocket upgrade) IoT Hub's JSON
/// shape, keeping their text as the message.
async fn hub_shaped_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let code = match status.as_u16() {
        400 => ErrorCode::ArgumentInvalid,
        401 => ErrorCode::IotHubUnauthorized,
        403 => ErrorCode::GenericForbidden,
        404 => ErrorCode::GenericNotFound,
        405 => ErrorCode::GenericMethodNotAllowed,
        413 => ErrorCode::GenericRequestEntityTooLarge,
        415 => ErrorCode::GenericUnsupportedMediaType,
        _ => ErrorCode::ServerError,
    };
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string()
    } else {
        text
    };
    let mut e = ServiceError::new(code, message);
    e.status = status.as_u16();
    let mut out = ApiError(e).into_response();
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

/// An error answer in the hub's JSON shape.
struct ApiError(ServiceError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0.body(now_ms()))).into_response()
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        ApiError(e)
    }
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError(ServiceError::new(ErrorCode::ArgumentInvalid, msg))
}

type ApiResult = Result<Response, ApiError>;

/// Extractor: the request carries a valid iothubowner SAS token.
struct Authorized;

impl FromRequestParts<AppState> for Authorized {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        s: &AppState,
    ) -> Result<Self, ApiError> {
        let h = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        s.shared
            .read_hub(|hub| hub.check_service_token(h, now_ms()))?;
        Ok(Authorized)
    }
}

/// The If-Match header as sent (the hub compares it without quotes; `*` is any).
fn if_match(h: &HeaderMap) -> Option<String> {
    h.get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A request body as its REST type (an empty body is the type's default), or the hub's
/// 400 saying what is wrong with it.
fn parse_body<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        return Ok(T::default());
    }
    parse_required(body)
}

/// A request body that must be there.
fn parse_required<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("request body is not valid: {e}")))
}

async fn websocket(
    State(s): State<AppState>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("mqtt"));
    let Ok(ws) = ws else {
        return (
            StatusCode::BAD_REQUEST,
            "expected a WebSocket upgrade with subprotocol mqtt",
        )
            .into_response();
    };
    if !offered {
        return (
            StatusCode::BAD_REQUEST,
            "the WebSocket subprotocol must be mqtt",
        )
            .into_response();
    }
    let Some(slot) = s.shared.device_slot() else {
        return ApiError(ServiceError::new(
            ErrorCode::ServiceUnavailable,
            format!(
                "devhub serves {} device connections already (--max-connections); try again later",
                s.shared.limits.max_connections
            ),
        ))
        .into_response();
    };
    let shared = s.shared.clone();
    let max = shared.limits.max_ws_message;
    // tungstenite reserves 128 KB read and write buffers per socket by default: most of a
    // connection's memory. Device packets are small: a 1 KiB read chunk (a bigger message
    // is read in more chunks) keeps an idle connection at about 7 KB (4 KiB: 10 KB).
    ws.protocols(["mqtt", "MQTT"])
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| serve_websocket(shared, socket, slot))
        .into_response()
}

// ------------------------------------------------------------------ identities

/// `GET /devices?top=N`: at most `top` devices (1000 when not given, as on IoT Hub).
#[derive(Deserialize)]
struct ListQuery {
    top: Option<String>,
}

async fn list_devices(
    _: Authorized,
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    let top = match q.top.as_deref().map(str::trim) {
        None | Some("") => 1000,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| bad_request("top must be a whole number from 1 to 1000"))?,
    };
    let v = s.shared.read_hub(|h| -> Result<Value, ServiceError> {
        let list = h.store().devices()?;
        Ok(Value::Array(
            list.iter()
                .take(top)
                .map(|r| serde_json::to_value(h.identity_view(r)).unwrap_or_default())
                .collect(),
        ))
    })?;
    Ok(Json(v).into_response())
}

/// `POST /devices`: bulk registry operations; 200 when all succeeded, else 400 with the
/// same result listing the ones that failed.
async fn bulk_registry(_: Authorized, State(s): State<AppState>, body: Bytes) -> ApiResult {
    let ops: Vec<Value> = parse_required(&body)?;
    let v = s
        .shared
        .with_hub(|h| match h.bulk_registry(&ops, now_ms()) {
            Ok((v, actions)) => (Ok(v), actions),
            Err(e) => (Err(e), Vec::new()),
        })?;
    let status = if v["isSuccessful"] == Value::Bool(true) {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok((status, Json(v)).into_response())
}

/// `DELETE /devices/{id}/commands`: empties the device's C2D queue.
async fn purge_c2d(_: Authorized, State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let v = s.shared.with_hub(|h| (h.purge_c2d(&id), Vec::new()))?;
    Ok(Json(v).into_response())
}

/// `POST /devices/query` with `{"query": "SELECT ..."}`; pages with the
/// `x-ms-max-item-count` (default 100, at most 1000) and `x-ms-continuation` headers.
async fn query_twins(
    _: Authorized,
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let v: Value = parse_required(&body)?;
    let text = v
        .get("query")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request(r#"the body must be {"query": "SELECT * FROM devices ..."}"#))?;
    let header_number = |name: &str| -> Result<Option<usize>, ApiError> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|t| t.trim().parse::<usize>().ok())
                .map(Some)
                .ok_or_else(|| bad_request(format!("the {name} header must be a whole number"))),
        }
    };
    let skip = header_number("x-ms-continuation")?.unwrap_or(0);
    let max = header_number("x-ms-max-item-count")?
        .unwrap_or(100)
        .clamp(1, 1000);
    let page = s.shared.read_hub(|h| h.query(text, skip, max))?;
    let mut r = Json(Value::Array(page.items)).into_response();
    let item_type = if page.twins { "twin" } else { "raw" };
    r.headers_mut().insert(
        "x-ms-item-type",
        header::HeaderValue::from_static(item_type),
    );
    if let Some(next) = page.next {
        if let Ok(v) = header::HeaderValue::from_str(&next.to_string()) {
            r.headers_mut().insert("x-ms-continuation", v);
        }
    }
    Ok(r)
}

async fn registry_statistics(_: Authorized, State(s): State<AppState>) -> ApiResult {
    let v = s.shared.read_hub(|h| h.registry_statistics())?;
    Ok(Json(v).into_response())
}

async fn service_statistics(_: Authorized, State(s): State<AppState>) -> ApiResult {
    Ok(Json(s.shared.read_hub(|h| h.service_statistics())).into_response())
}

async fn list_modules(
    _: Authorized,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    let v = s.shared.read_hub(|h| -> Result<Value, ServiceError> {
        let list = h.store().modules(&id)?;
        Ok(Value::Array(
            list.iter()
                .map(|r| serde_json::to_value(h.identity_view(r)).unwrap_or_default())
                .collect(),
        ))
    })?;
    Ok(Json(v).into_response())
}

/// The identity a route names: `{id}` (a device) or `{id}/modules/{mid}` (a module).
/// One handler serves both routes.
#[derive(Deserialize)]
struct Target {
    id: String,
    mid: Option<String>,
}

async fn put_identity(
    _: Authorized,
    State(s): State<AppState>,
    Path(t): Path<Target>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let body: IdentityRequest = parse_body(&body)?;
    let im = if_match(&headers);
    let v = s.shared.with_hub(|h| {
        match h.put_identity(&t.id, t.mid.as_deref(), &body, im.as_deref(), now_ms()) {
            Ok((v, actions)) => (Ok(v), actions),
            Err(e) => (Err(e), Vec::new()),
        }
    })?;
    Ok(Json(v).into_response())
}

async fn get_identity(
    _: Authorized,
    State(s): State<AppState>,
    Path(t): Path<Target>,
) -> ApiResult {
    let v = s
        .shared
        .read_hub(|h| h.identity_of(&t.id, t.mid.as_deref()))?;
    Ok(Json(v).into_response())
}

async fn delete_identity(
    _: Authorized,
    State(s): State<AppState>,
    Path(t): Path<Target>,
    headers: HeaderMap,
) -> ApiResult {
    let im = if_match(&headers);
    s.shared.with_hub(|h| {
        match h.delete_identity(&t.id, t.mid.as_deref(), im.as_deref(), now_ms()) {
            Ok(actions) => (Ok(()), actions),
            Err(e) => (Err(e), Vec::new()),
        }
    })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ------------------------------------------------------------------ twins

async fn get_twin(_: Authorized, State(s): State<AppState>, Path(t): Path<Target>) -> ApiResult {
    Ok(Json(
        s.shared
            .read_hub(|h| h.twin_view(&t.id, t.mid.as_deref()))?,
    )
    .into_response())
}

async fn patch_twin(
    auth: Authorized,
    state: State<AppState>,
    path: Path<Target>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    update_twin(auth, state, path, headers, body, false)
}

async fn replace_twin(
    auth: Authorized,
    state: State<AppState>,
    path: Path<Target>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    update_twin(auth, state, path, headers, body, true)
}

/// PATCH merges tags and desired properties; PUT replaces them.
fn update_twin(
    _: Authorized,
    State(s): State<AppState>,
    Path(t): Path<Target>,
    headers: HeaderMap,
    body: Bytes,
    replace: bool,
) -> ApiResult {
    let body: TwinUpdate = parse_body(&body)?;
    let im = if_match(&headers);
    let v = s.shared.with_hub(|h| {
        match h.update_twin(
            &t.id,
            t.mid.as_deref(),
            &body,
            replace,
            im.as_deref(),
            now_ms(),
        ) {
            Ok((v, actions)) => (Ok(v), actions),
            Err(e) => (Err(e), Vec::new()),
        }
    })?;
    Ok(Json(v).into_response())
}

// ------------------------------------------------------------------ methods

async fn invoke_method(
    _: Authorized,
    State(s): State<AppState>,
    Path(t): Path<Target>,
    body: Bytes,
) -> ApiResult {
    let (device, module) = (t.id.as_str(), t.mid.as_deref());
    let req: MethodInvocation = parse_required(&body)?;
    let name = req.method_name;
    let response_timeout = req.response_timeout_in_seconds.unwrap_or(30);
    if !(5..=300).contains(&response_timeout) {
        return Err(bad_request(
            "responseTimeoutInSeconds must be between 5 and 300",
        ));
    }
    let connect_timeout = req.connect_timeout_in_seconds.unwrap_or(0);
    if connect_timeout > 300 {
        return Err(bad_request("connectTimeoutInSeconds must be at most 300"));
    }
    let payload = req.payload;
    let connect_deadline = tokio::time::Instant::now() + Duration::from_secs(connect_timeout);
    let (call, rx) = loop {
        // Register the waiter under the hub lock's shadow: the request is dispatched only
        // after `wait_call`, so the answer cannot arrive first.
        let started =
            s.shared
                .with_hub(|h| match h.invoke_method(device, module, &name, &payload) {
                    Ok((call, actions)) => (Ok((call, s.shared.wait_call(call))), actions),
                    Err(e) => (Err(e), Vec::new()),
                });
        match started {
            Ok(pair) => break pair,
            Err(e)
                if e.code == ErrorCode::DeviceNotOnline
                    && tokio::time::Instant::now() < connect_deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    match tokio::time::timeout(Duration::from_secs(response_timeout), rx).await {
        Ok(Ok((status, payload))) => Ok(Json(MethodResult { status, payload }).into_response()),
        _ => {
            s.shared.forget_call(call);
            s.shared.with_hub(|h| {
                h.cancel_method(call);
                ((), Vec::new())
            });
            Err(ApiError(ServiceError::new(
                ErrorCode::GatewayTimeout,
                format!("the device did not answer {name:?} within {response_timeout} s"),
            )))
        }
    }
}

// ------------------------------------------------------------------ C2D

/// `POST /devices/{id}/messages/deviceBound`: the body is the message; headers carry
/// `iothub-messageid`, `iothub-correlationid`, `iothub-userid`, `iothub-ack`,
/// `iothub-expiry` (ISO-8601), `content-type`, `content-encoding` and `iothub-app-{name}`.
async fn send_c2d(
    _: Authorized,
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut props = PropertyBag::default();
    props.system.message_id = h("iothub-messageid");
    props.system.correlation_id = h("iothub-correlationid");
    props.system.user_id = h("iothub-userid");
    props.system.content_type = h("content-type");
    props.system.content_encoding = h("content-encoding");
    if let Some(ack) = h("iothub-ack") {
        if !["none", "positive", "negative", "full"].contains(&ack.as_str()) {
            return Err(bad_request(
                "iothub-ack must be none, positive, negative or full",
            ));
        }
        props.system.ack = Some(ack);
    }
    let now = now_ms();
    let ttl = match h("iothub-expiry") {
        None => None,
        Some(e) => {
            let t = chrono::DateTime::parse_from_rfc3339(&e)
                .map_err(|_| bad_request("iothub-expiry must be an ISO-8601 time"))?;
            props.system.expiry = Some(e.clone());
            Some((t.timestamp_millis() as u64).saturating_sub(now))
        }
    };
    for (name, value) in &headers {
        if let Some(app) = name.as_str().strip_prefix("iothub-app-") {
            let v = value
                .to_str()
                .map_err(|_| bad_request(format!("header {name} is not ASCII")))?;
            props.app.push((app.to_string(), Some(v.to_string())));
        }
    }
    let mid = s
        .shared
        .with_hub(|hub| match hub.send_c2d(&id, &body, props, ttl, now) {
            Ok((mid, actions)) => (Ok(mid), actions),
            Err(e) => (Err(e), Vec::new()),
        })?;
    Ok(Json(C2dAccepted { message_id: mid }).into_response())
}

// ------------------------------------------------------------------ devhub's own

async fn demo(State(s): State<AppState>, headers: HeaderMap) -> ApiResult {
    let Some(device) = s.cfg.demo_device.clone() else {
        return Err(ApiError(ServiceError::new(
            ErrorCode::GenericNotFound,
            "devhub runs without --demo",
        )));
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1:8080")
        .to_string();
    let id = Identity::device(DeviceId::new(&device).map_err(|e| bad_request(e.to_string()))?);
    let cs = s.shared.read_hub(|h| h.connection_string(&id, None))?;
    let (hub, service) = s
        .shared
        .read_hub(|h| (h.config().hub_name.clone(), h.service_connection_string()));
    let (scope, group) = s.shared.read_hub(|h| {
        (
            h.id_scope().map(str::to_string),
            h.enrollment_group(DEMO_GROUP).map(SymmetricKey::to_base64),
        )
    });
    // Only devhub's own page (and --allow-origin pages) can read this: see guard.rs.
    Ok(Json(json!({
        "deviceId": device,
        "hubName": hub,
        "connectionString": cs,
        "serviceConnectionString": service,
        "websocketUrl": format!("ws://{host}/$iothub/websocket"),
        "idScope": scope,
        "demoGroup": group.map(|key| json!({"name": DEMO_GROUP, "key": key})),
    }))
    .into_response())
}

#[derive(Deserialize)]
struct EventsQuery {
    device: Option<String>,
    #[serde(default)]
    after: i64,
    limit: Option<u32>,
}

/// The most events one `GET /devhub/events` answers with; page on with `after`.
const MAX_PAGE: u32 = 1000;
/// Events read per hold of the hub lock.
const READ_CHUNK: u32 = 100;

/// Reads stored events after `after`, `READ_CHUNK` at a time, taking the hub lock once per
/// chunk rather than for the whole answer.
fn read_events(
    shared: &Shared,
    device: Option<&str>,
    mut after: i64,
    limit: u32,
) -> Result<Vec<EventRecord>, ServiceError> {
    let mut out = Vec::new();
    while (out.len() as u32) < limit {
        let want = READ_CHUNK.min(limit - out.len() as u32);
        let chunk = shared.read_hub(|h| h.store().events(device, after, want))?;
        let done = (chunk.len() as u32) < want;
        if let Some(last) = chunk.last() {
            after = last.seq;
        }
        out.extend(chunk);
        if done {
            break;
        }
    }
    Ok(out)
}

/// `GET /devhub/events?device=ID&after=SEQ&limit=N`: stored telemetry, oldest first, at
/// most 1000 a page (the default is 1000).
async fn events(
    _: Authorized,
    State(s): State<AppState>,
    Query(q): Query<EventsQuery>,
) -> ApiResult {
    let limit = q.limit.unwrap_or(MAX_PAGE).min(MAX_PAGE);
    let list = read_events(&s.shared, q.device.as_deref(), q.after, limit)?;
    Ok(Json(list).into_response())
}

/// `GET /devhub/events/stream`: server-sent events, one per stored message (`id` is its
/// sequence number). A client that reconnects with `Last-Event-ID` (as EventSource does)
/// first gets what was stored after that id, from the store. A client that falls so far
/// behind that the live feed overtakes it gets an event named `lagged` whose data says how
/// many it missed (`{"missed": N}`; fetch them from `/devhub/events?after=...`), instead of
/// silently losing them.
async fn events_stream(
    _: Authorized,
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    let shared = s.shared.clone();
    let device = q.device;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    tokio::spawn(async move {
        // Subscribe before replaying, so nothing stored meanwhile falls between the two.
        let mut live = shared.events();
        let wanted = |ev: &EventRecord| device.as_deref().is_none_or(|d| d == ev.device_id);
        let as_event = |ev: &EventRecord| {
            Event::default()
                .id(ev.seq.to_string())
                .json_data(ev)
                .unwrap_or_default()
        };
        let mut last = resume.unwrap_or(i64::MAX);
        if let Some(mut after) = resume {
            loop {
                let Ok(page) = read_events(&shared, device.as_deref(), after, READ_CHUNK) else {
                    return;
                };
                let Some(end) = page.last().map(|e| e.seq) else {
                    break;
                };
                for ev in &page {
                    if tx.send(as_event(ev)).await.is_err() {
                        return;
                    }
                }
                after = end;
                last = end;
            }
        }
        loop {
            match live.recv().await {
                Ok(ev) => {
                    if (resume.is_some() && ev.seq <= last) || !wanted(&ev) {
                        continue;
                    }
                    if tx.send(as_event(&ev)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let ev = Event::default()
                        .event("lagged")
                        .data(json!({"missed": missed}).to_string());
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    Sse::new(ReceiverStream::new(rx).map(Ok)).keep_alive(KeepAlive::default())
}

use twinscope_proto::iothub::service::Fault as FaultRequest;

async fn faults(_: Authorized, State(s): State<AppState>, body: Bytes) -> ApiResult {
    let req: FaultRequest = serde_json::from_slice(&body).map_err(|e| {
        bad_request(format!(
            "fault request: {e}; expected {{\"action\": \"drop\" | \"fail\" | \"delay\" | \"drop-rate\" | \"skip-desired\" | \"clear\", ...}}"
        ))
    })?;
    if let FaultRequest::Fail { status, .. } = &req {
        if ErrorCode::for_status(*status).is_none() {
            return Err(bad_request(format!(
                "a fail fault's status must be one of 400, 401, 403, 404, 412, 413, 429, 500, 503, 504 (got {status})"
            )));
        }
    }
    s.shared.with_hub(|h| match req {
        FaultRequest::Drop { device } => ((), h.drop_device(&device, now_ms())),
        FaultRequest::Fail { op, count, status } => {
            let code = ErrorCode::for_status(status).expect("checked above");
            h.fail_next(op, count, code);
            ((), Vec::new())
        }
        FaultRequest::Delay { ms } => {
            h.set_delay(ms);
            ((), Vec::new())
        }
        FaultRequest::SkipDesired { device } => {
            h.skip_next_desired(&device);
            ((), Vec::new())
        }
        FaultRequest::DropRate { rate, seed } => {
            h.set_drop_rate(rate, seed);
            ((), Vec::new())
        }
        FaultRequest::Clear => {
            h.clear_faults();
            ((), Vec::new())
        }
    });
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ------------------------------------------------------------------ DPS enrollments

/// The enrollment group `--demo` creates.
const DEMO_GROUP: &str = "demo-group";

/// `PUT /enrollments/{id}` and `PUT /enrollmentGroups/{id}`: the body of the DPS service
/// API, `{"attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": ...}}}`;
/// a key is generated when none is given.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct EnrollmentRequest {
    #[serde(default)]
    attestation: Option<AttestationRequest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttestationRequest {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    symmetric_key: Option<crate::rest::SymmetricKeys>,
}

fn enrollment_view(id: &str, key: &SymmetricKey, group: bool) -> Response {
    let id_field = if group {
        "enrollmentGroupId"
    } else {
        "registrationId"
    };
    Json(json!({
        id_field: id,
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key.to_base64()}},
        "provisioningStatus": "enabled",
    }))
    .into_response()
}

fn put_enrollment_of(s: &AppState, id: &str, body: &Bytes, group: bool) -> ApiResult {
    if !group {
        twinscope_proto::provisioning::check_registration_id(id).map_err(bad_request)?;
    } else if id.is_empty() || id.len() > 128 {
        return Err(bad_request(
            "the enrollment group id must be 1 to 128 characters",
        ));
    }
    let req: EnrollmentRequest = if body.is_empty() {
        EnrollmentRequest::default()
    } else {
        parse_required(body)?
    };
    let given = match req.attestation {
        Some(a) if a.kind != "symmetricKey" => {
            return Err(bad_request(format!(
                "attestation type {:?} is not supported by devhub; use symmetricKey",
                a.kind
            )))
        }
        Some(a) => a.symmetric_key.and_then(|k| k.primary_key),
        None => None,
    };
    let key = match given.filter(|k| !k.is_empty()) {
        Some(k) => SymmetricKey::from_base64(&k)
            .map_err(|_| bad_request("attestation.symmetricKey.primaryKey is not valid base64"))?,
        None => SymmetricKey::from_base64(&crate::hub::generate_key())
            .expect("generated keys are base64"),
    };
    s.shared.with_hub(|h| {
        if group {
            h.enroll_group(id, key.clone());
        } else {
            h.enroll_individual(id, key.clone());
        }
        ((), Vec::new())
    });
    Ok(enrollment_view(id, &key, group))
}

fn get_enrollment_of(s: &AppState, id: &str, group: bool) -> ApiResult {
    let key = s.shared.read_hub(|h| {
        if group {
            h.enrollment_group(id).cloned()
        } else {
            h.individual_enrollment(id).cloned()
        }
    });
    match key {
        Some(k) => Ok(enrollment_view(id, &k, group)),
        None => Err(ApiError(ServiceError::new(
            ErrorCode::GenericNotFound,
            format!("no enrollment {id:?}"),
        ))),
    }
}

fn delete_enrollment_of(s: &AppState, id: &str, group: bool) -> ApiResult {
    if s.shared
        .with_hub(|h| (h.remove_enrollment(id, group), Vec::new()))
    {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError(ServiceError::new(
            ErrorCode::GenericNotFound,
            format!("no enrollment {id:?}"),
        )))
    }
}

async fn put_enrollment(
    _: Authorized,
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    put_enrollment_of(&s, &id, &body, false)
}

async fn get_enrollment(
    _: Authorized,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    get_enrollment_of(&s, &id, false)
}

async fn delete_enrollment(
    _: Authorized,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    delete_enrollment_of(&s, &id, false)
}

async fn put_enrollment_group(
    _: Authorized,
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    put_enrollment_of(&s, &id, &body, true)
}

async fn get_enrollment_group(
    _: Authorized,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    get_enrollment_of(&s, &id, true)
}

async fn delete_enrollment_group(
    _: Authorized,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    delete_enrollment_of(&s, &id, true)
}
