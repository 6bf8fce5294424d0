//! The HTTP surface of push and pull, independent of how the request arrived (API Gateway
//! through Lambda, or the local server): parse, authenticate, call the engine, map errors.

use std::time::Instant;

use http::{header, HeaderMap, Method, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tracing::{info, warn, Instrument};

use crate::access::Operation;
use crate::auth;
pub use crate::auth::AuthMode;
use crate::engine::{Caller, Engine, EngineError};
use crate::logged;
use crate::protocol::{PullRequest, PushRequest, Reply, VersionType};
use crate::ticket::TicketKey;

/// The space of requests without a `spaceID` parameter.
pub const DEFAULT_SPACE: &str = "default";
/// Longest space id accepted, in bytes.
pub const MAX_SPACE_BYTES: usize = 100;

/// What the API needs of a request.
#[derive(Debug, Clone, Copy)]
pub struct ApiRequest<'a> {
    /// HTTP method.
    pub method: &'a Method,
    /// Raw query string, without `?`.
    pub query: Option<&'a str>,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Request body.
    pub body: &'a [u8],
    /// The `sub` claim of a verified JWT, when API Gateway's authorizer ran.
    pub jwt_sub: Option<&'a str>,
    /// The platform's request id (API Gateway's), for logs.
    pub request_id: Option<&'a str>,
}

/// Push and pull over HTTP.
#[derive(Clone)]
pub struct Api {
    engine: Engine,
    auth_mode: AuthMode,
    max_body_bytes: usize,
    tickets: Option<TicketKey>,
}

/// An error response: status and `{"error", "message"}`.
struct Failure {
    status: StatusCode,
    error: &'static str,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Failure {
            status,
            error,
            message: message.into(),
        }
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Unauthorized(m) => {
                Failure::new(StatusCode::UNAUTHORIZED, "Unauthorized", m)
            }
            EngineError::Forbidden(m) => Failure::new(StatusCode::FORBIDDEN, "Forbidden", m),
            EngineError::BadRequest(m) => {
                Failure::new(StatusCode::BAD_REQUEST, "InvalidRequest", m)
            }
            EngineError::Unavailable(m) => {
                Failure::new(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", m)
            }
            EngineError::Internal(m) => {
                Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", m)
            }
        }
    }
}

impl Api {
    /// The API over `engine`.
    pub fn new(engine: Engine, auth_mode: AuthMode, max_body_bytes: usize) -> Self {
        Api {
            engine,
            auth_mode,
            max_body_bytes,
            tickets: None,
        }
    }

    /// Issues poke tickets signed with `key` ([`Operation::Poke`]: `POST
    /// /api/replicache/poke-ticket?spaceID=…` answers `{"ticket", "expiresAt"}` to a user the
    /// space policy lets listen); without a key that route answers 404.
    pub fn with_tickets(mut self, key: TicketKey) -> Self {
        self.tickets = Some(key);
        self
    }

    /// The key poke tickets are signed with, if this API issues them.
    pub fn tickets(&self) -> Option<&TicketKey> {
        self.tickets.as_ref()
    }

    /// The engine this API calls.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Largest request body accepted, in bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// The answer to a body over [`Api::max_body_bytes`], for servers that stop reading
    /// such a body before it reaches [`Api::handle`].
    pub fn body_too_large(&self) -> Response<String> {
        let f = self.too_large();
        respond(f.status, json!({"error": f.error, "message": f.message}))
    }

    fn too_large(&self) -> Failure {
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!(
                "the body is larger than the {} bytes accepted",
                self.max_body_bytes
            ),
        )
    }

    /// Handles one request for `op`, logging it in a span with its space, client group and
    /// request ids, and its duration.
    pub async fn handle(&self, op: Operation, req: ApiRequest<'_>) -> Response<String> {
        let started = Instant::now();
        let replicache_request_id = req
            .headers
            .get("x-replicache-requestid")
            .and_then(|v| v.to_str().ok())
            .map(logged::bounded)
            .unwrap_or_default();
        let span = tracing::info_span!(
            "request",
            op = op.name(),
            space = tracing::field::Empty,
            client_group = tracing::field::Empty,
            user = tracing::field::Empty,
            request_id = req.request_id.unwrap_or_default(),
            replicache_request_id,
        );
        let result = self.dispatch(op, req).instrument(span.clone()).await;
        // A server error's own text goes to the log only: it may name internals (the
        // store's address, a table); the answer carries the request id to find it by.
        let mut detail = None;
        let response = match result {
            Ok((status, body)) => respond(status, body),
            Err(f) if f.status.is_server_error() => {
                let mut body = json!({"error": f.error, "message": server_error_message(f.status)});
                if let Some(id) = req.request_id {
                    body["requestId"] = json!(id);
                }
                detail = Some(f.message);
                respond(f.status, body)
            }
            Err(f) => respond(f.status, json!({"error": f.error, "message": f.message})),
        };
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let status = response.status().as_u16();
        metrics::histogram!(crate::telemetry_names::LATENCY_MS, "operation" => op.name())
            .record(elapsed_ms);
        if status == 503 {
            metrics::counter!(crate::telemetry_names::UNAVAILABLE, "operation" => op.name())
                .increment(1);
        }
        if status >= 500 {
            metrics::counter!(crate::telemetry_names::ERRORS_5XX, "operation" => op.name())
                .increment(1);
        }
        if op == Operation::Pull && status == 200 {
            metrics::histogram!(crate::telemetry_names::PULL_BYTES)
                .record(response.body().len() as f64);
        }
        span.in_scope(|| {
            if status >= 500 {
                let detail = detail.as_deref().unwrap_or_default();
                warn!(status, elapsed_ms, detail, "{} failed", op.name());
            } else {
                info!(status, elapsed_ms, "{} done", op.name());
            }
        });
        response
    }

    async fn dispatch(
        &self,
        op: Operation,
        req: ApiRequest<'_>,
    ) -> Result<(StatusCode, Value), Failure> {
        if req.method == Method::OPTIONS {
            return Ok((StatusCode::NO_CONTENT, Value::Null));
        }
        if req.method != Method::POST {
            return Err(Failure::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("{} takes POST, not {}", op.name(), req.method),
            ));
        }
        if req.body.len() > self.max_body_bytes {
            return Err(self.too_large());
        }
        let authorization = match req.headers.get(header::AUTHORIZATION) {
            // A header the server cannot read names nobody: it must not become `anonymous`.
            Some(v) if self.auth_mode == AuthMode::Header => Some(v.to_str().map_err(|_| {
                Failure::new(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    "the Authorization header must be visible ASCII",
                )
            })?),
            other => other.and_then(|v| v.to_str().ok()),
        };
        let user = auth::user_id(self.auth_mode, req.jwt_sub, authorization)
            .map_err(|m| Failure::new(StatusCode::UNAUTHORIZED, "Unauthorized", m))?;
        let space = space_id(req.query)?;
        let span = tracing::Span::current();
        span.record("space", space.as_str());
        span.record("user", user.as_str());
        let caller = Caller { user, space };
        if op == Operation::Poke {
            return self.issue_ticket(&caller).await;
        }
        let body = parse_json(req.body)?;
        // Versions first: a legacy (version 0) request has another shape altogether.
        let (version_field, kind) = match op {
            Operation::Push => ("pushVersion", VersionType::Push),
            Operation::Pull => ("pullVersion", VersionType::Pull),
            Operation::Poke => return Err(not_found(op)),
        };
        if let Some(version) = body.get(version_field).and_then(Value::as_u64) {
            let schema = body
                .get("schemaVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if let Some(e) = self.engine.version_error(version, kind, schema) {
                return Ok((
                    StatusCode::OK,
                    serde_json::to_value(e).expect("serializable"),
                ));
            }
        }
        match op {
            Operation::Push => {
                let body: PushRequest = parse_request(body)?;
                span.record(
                    "client_group",
                    tracing::field::debug(logged::bounded(&body.client_group_id)),
                );
                let reply = self.engine.push(&caller, &body).await?;
                Ok((StatusCode::OK, reply_json(reply.map(|()| json!({})))))
            }
            Operation::Pull => {
                let body: PullRequest = parse_request(body)?;
                span.record(
                    "client_group",
                    tracing::field::debug(logged::bounded(&body.client_group_id)),
                );
                let reply = self.engine.pull(&caller, &body).await?;
                let reply = reply.map(|r| serde_json::to_value(r).expect("serializable"));
                Ok((StatusCode::OK, reply_json(reply)))
            }
            Operation::Poke => Err(not_found(op)),
        }
    }
}

impl<T> Reply<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Reply<U> {
        match self {
            Reply::Ok(t) => Reply::Ok(f(t)),
            Reply::Error(e) => Reply::Error(e),
        }
    }
}

impl Api {
    /// A poke ticket for the caller, if the space policy lets them listen.
    async fn issue_ticket(&self, caller: &Caller) -> Result<(StatusCode, Value), Failure> {
        let Some(key) = &self.tickets else {
            return Err(Failure::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                "this server issues no poke tickets",
            ));
        };
        let (ticket, expires_at) = self.engine.issue_ticket(caller, key).await?;
        Ok((
            StatusCode::OK,
            json!({"ticket": ticket, "expiresAt": expires_at}),
        ))
    }
}

/// Responses smaller than this are not worth compressing.
const MIN_COMPRESSED_BYTES: usize = 1024;

/// `response` as the client's `Accept-Encoding` (in `request_headers`) takes it: gzip when
/// allowed and worth it (`Content-Encoding: gzip`, the body then binary), as is otherwise.
/// Browsers' `fetch`, which Replicache uses, decompresses on its own.
pub fn encode(request_headers: &HeaderMap, response: Response<String>) -> Response<Vec<u8>> {
    let (mut parts, body) = response.into_parts();
    parts.headers.insert(
        header::VARY,
        header::HeaderValue::from_static("accept-encoding"),
    );
    if body.len() < MIN_COMPRESSED_BYTES || !accepts_gzip(request_headers) {
        return Response::from_parts(parts, body.into_bytes());
    }
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let written = std::io::Write::write_all(&mut encoder, body.as_bytes());
    let (Ok(()), Ok(compressed)) = (written, encoder.finish()) else {
        return Response::from_parts(parts, body.into_bytes());
    };
    parts.headers.insert(
        header::CONTENT_ENCODING,
        header::HeaderValue::from_static("gzip"),
    );
    metrics::histogram!(crate::telemetry_names::BYTES_COMPRESSED).record(compressed.len() as f64);
    Response::from_parts(parts, compressed)
}

/// Whether `Accept-Encoding` allows gzip (`gzip` or `*`, with a quality above 0).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let quality = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (name == "gzip" || name == "*") && quality > 0.0
        })
}

/// An operation this API does not serve over HTTP.
fn not_found(op: Operation) -> Failure {
    Failure::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{} is not an HTTP endpoint", op.name()),
    )
}

fn reply_json(reply: Reply<Value>) -> Value {
    match reply {
        Reply::Ok(v) => v,
        Reply::Error(e) => serde_json::to_value(e).expect("serializable"),
    }
}

fn parse_json(body: &[u8]) -> Result<Value, Failure> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "InvalidJSON",
            format!("malformed JSON: {e}"),
        )
    })?;
    if !value.is_object() {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "the body must be a JSON object",
        ));
    }
    Ok(value)
}

fn parse_request<T: DeserializeOwned>(body: Value) -> Result<T, Failure> {
    serde_json::from_value(body).map_err(|e| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            format!("the body does not match the protocol: {e}"),
        )
    })
}

/// The status an engine error answers, and its text: the one mapping, which the poke sockets
/// use too. A server error's text may name internals: the caller logs it and answers
/// [`server_error_message`] instead.
#[cfg(any(feature = "lambda", feature = "dev-server"))]
pub(crate) fn engine_status(e: EngineError) -> (StatusCode, String) {
    let f = Failure::from(e);
    (f.status, f.message)
}

/// What the answer with a server error `status` says, in place of the error itself.
pub(crate) fn server_error_message(status: StatusCode) -> &'static str {
    if status == StatusCode::SERVICE_UNAVAILABLE {
        "temporarily unavailable: retry later"
    } else {
        "internal error: the details are in the server's log"
    }
}

/// The `spaceID` query parameter, `default` when absent.
fn space_id(query: Option<&str>) -> Result<String, Failure> {
    let bad = |m: String| Failure::new(StatusCode::BAD_REQUEST, "InvalidRequest", m);
    let found = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == "spaceID")
        .map(|(_, v)| {
            let v = v.replace('+', " ");
            percent_decode(&v)
                .ok_or_else(|| bad(format!("spaceID {v:?} is not valid percent-encoded UTF-8")))
        })
        .transpose()?;
    let space = found.unwrap_or_else(|| DEFAULT_SPACE.to_owned());
    if space.is_empty() || space.len() > MAX_SPACE_BYTES || space.chars().any(char::is_control) {
        return Err(bad(format!(
            "spaceID must be 1 to {MAX_SPACE_BYTES} bytes without control characters"
        )));
    }
    Ok(space)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// An answer. No CORS headers: in AWS, API Gateway adds them as the template's
/// `AllowedOrigins` says (and answers preflights itself); the dev server has its own CORS
/// layer configured the same way.
fn respond(status: StatusCode, body: Value) -> Response<String> {
    let builder = Response::builder().status(status);
    let builder = if status == StatusCode::METHOD_NOT_ALLOWED {
        builder.header(header::ALLOW, "POST, OPTIONS")
    } else {
        builder
    };
    let (builder, text) = if body.is_null() {
        (builder, String::new())
    } else {
        (
            builder.header(header::CONTENT_TYPE, "application/json"),
            body.to_string(),
        )
    };
    builder.body(text).expect("static headers are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_only_when_accepted_and_worth_it() {
        let big = Response::new("x".repeat(4096));
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, v.parse().unwrap());
            h
        };
        for accepted in ["gzip", "gzip, deflate, br", "br;q=1.0, gzip;q=0.8", "*"] {
            let r = encode(&headers(accepted), big.clone());
            assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip", "{accepted}");
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut flate2::read::GzDecoder::new(&r.body()[..]),
                &mut text,
            )
            .unwrap();
            assert_eq!(text, big.body().as_str());
        }
        for refused in ["identity", "br", "gzip;q=0", "deflate"] {
            let r = encode(&headers(refused), big.clone());
            assert!(
                r.headers().get(header::CONTENT_ENCODING).is_none(),
                "{refused}"
            );
        }
        let small = encode(&headers("gzip"), Response::new("{}".to_owned()));
        assert!(small.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(small.body(), b"{}");
        assert_eq!(small.headers()[header::VARY], "accept-encoding");
    }

    #[test]
    fn space_defaults_and_decodes() {
        assert_eq!(space_id(None).ok(), Some("default".into()));
        assert_eq!(
            space_id(Some("a=1&spaceID=my%20room")).ok(),
            Some("my room".into())
        );
        assert!(space_id(Some("spaceID=")).is_err());
        assert!(space_id(Some("spaceID=%ff")).is_err());
    }
}
