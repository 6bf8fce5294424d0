//! The local server: push and pull through the same HTTP layer as the Lambda functions,
//! pokes over a WebSocket, and a static web client, in one process on 127.0.0.1.
//!
//! A dev server for your application is one call:
//!
//! ```no_run
//! use replicache_dynamodb::{dev, App, Mutators};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), dev::Error> {
//!     let app = App::new(Mutators::new()); // your application
//!     dev::run(app).await // reads the command line and the environment (see `Options`)
//! }
//! ```
//!
//! The store is in memory unless `TABLE_NAME` is set (then DynamoDB, through the AWS SDK's
//! standard environment, e.g. `AWS_ENDPOINT_URL_DYNAMODB` for DynamoDB Local). There is no
//! authorizer: the `Authorization` header is the user id, as in `AUTH_MODE=header`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use bytes::Bytes;
use clap::Parser;
use http::{header, HeaderValue, Method, StatusCode};
use tokio::sync::watch;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::ServeDir;
use tracing::{debug, info, warn};

use crate::access::Operation;
use crate::app::App;
use crate::auth::AuthMode;
use crate::config::Settings;
use crate::engine::{Caller, Engine};
use crate::http_api::{Api, ApiRequest, DEFAULT_SPACE};
use crate::pokes::{Pokes, Signal, POKE};
#[cfg(feature = "dynamodb")]
use crate::store::dynamo::DynamoStore;
use crate::store::memory::MemoryStore;
use crate::store::Store;
use crate::ticket::TicketKey;

/// Why the dev server could not start or stopped.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// How long one send to a poke connection may take before the connection is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The dev server's options: its command line, each also an environment variable.
#[derive(Parser, Debug, Clone)]
#[command(version, about = "Replicache sync server for local development")]
pub struct Options {
    /// Port to listen on, on 127.0.0.1 (0: any free port).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Directory of the web client, served at `/`.
    #[arg(long, env = "WEB_DIR", default_value = "web/dist")]
    pub web_dir: PathBuf,
    /// Create the DynamoDB table if it does not exist (with TABLE_NAME, for DynamoDB Local).
    #[arg(long)]
    pub create_table: bool,
    /// Seconds between heartbeats on idle poke connections.
    #[arg(long, env = "POKE_HEARTBEAT_SECS", default_value_t = 30)]
    pub heartbeat_secs: u64,
    /// Origins allowed to call the API from a browser (CORS), comma-separated; `*`: any.
    /// The same as the template's `AllowedOrigins`.
    #[arg(long, env = "ALLOWED_ORIGINS", default_value = "*")]
    pub allowed_origins: String,
}

/// Runs `app` with the options of the command line and environment, until Ctrl-C or
/// SIGTERM. Prints `replicache-dynamodb dev server: http://127.0.0.1:<port>/` once it
/// listens.
pub async fn run(app: App) -> Result<(), Error> {
    crate::telemetry::init();
    serve(app, Options::parse()).await
}

/// [`run`], serving the web client in `web_dir` unless `--web-dir` or `WEB_DIR` names another:
/// for an app whose dev server knows where its client's build lies.
pub async fn run_with_web_dir(app: App, web_dir: &'static str) -> Result<(), Error> {
    use clap::{CommandFactory, FromArgMatches};
    crate::telemetry::init();
    let command = Options::command().mut_arg("web_dir", |arg| arg.default_value(web_dir));
    serve(app, Options::from_arg_matches(&command.get_matches())?).await
}

/// Runs `app` with `options`; see [`run`].
pub async fn serve(app: App, options: Options) -> Result<(), Error> {
    let settings = Settings::from_env(AuthMode::Header)?.for_dev_server()?;
    let app = settings.app(app)?;
    let store: Arc<dyn Store> = match &settings.table_name {
        #[cfg(feature = "dynamodb")]
        Some(table) => {
            let store = DynamoStore::from_env(table.clone()).await?;
            if options.create_table {
                store.create_table().await?;
            }
            info!(table, "store: DynamoDB");
            Arc::new(store)
        }
        #[cfg(not(feature = "dynamodb"))]
        Some(_) => {
            return Err(crate::config::ConfigError::new(
                "TABLE_NAME",
                "set, but this dev server was built without DynamoDB: enable the feature \
                 dev-server-dynamodb of replicache-dynamodb, or unset it for the in-memory store",
            )
            .into())
        }
        None => {
            info!("store: in memory (set TABLE_NAME to use DynamoDB)");
            Arc::new(MemoryStore::new())
        }
    };
    let pokes = Arc::new(Pokes::default());
    let engine = Engine::new(store, app, settings.engine_config()).with_poker(pokes.clone());
    // Locally there is no authorizer: the Authorization header is the user id.
    let tickets = TicketKey::from_env()
        .map_err(|e| crate::config::ConfigError::new("POKE_TICKET_KEY", e.to_string()))?
        .unwrap_or_else(TicketKey::random);
    let api = Api::new(engine.clone(), AuthMode::Header, settings.max_body_bytes)
        .with_tickets(tickets.clone());
    let (stop, shutdown) = watch::channel(false);
    let cors = cors_layer(&options.allowed_origins)?;
    let state = DevState {
        api,
        engine,
        tickets,
        pokes,
        heartbeat: Duration::from_secs(options.heartbeat_secs.max(1)),
        shutdown,
    };
    let web_dir = options.web_dir.clone();
    let missing = get(move || not_found(web_dir.clone()));
    let app = Router::new()
        .route("/api/replicache/push", any(push))
        .route("/api/replicache/pull", any(pull))
        .route("/api/replicache/poke-ticket", any(poke_ticket))
        .route("/api/replicache/poke", get(poke))
        .layer(cors)
        .fallback_service(ServeDir::new(&options.web_dir).fallback(missing))
        .layer(middleware::from_fn(log_request))
        .with_state(state);

    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], options.port))).await?;
    let address = listener.local_addr()?;
    // Tests and scripts read this line to learn the port.
    println!("replicache-dynamodb dev server: http://{address}/");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            info!("shutting down");
            let _ = stop.send(true);
        })
        .await?;
    Ok(())
}

#[derive(Clone)]
struct DevState {
    api: Api,
    engine: Engine,
    tickets: TicketKey,
    pokes: Arc<Pokes>,
    heartbeat: Duration,
    shutdown: watch::Receiver<bool>,
}

/// CORS as API Gateway answers it for the template's `AllowedOrigins`.
fn cors_layer(origins: &str) -> Result<CorsLayer, Error> {
    let origins: Vec<&str> = origins
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .collect();
    let allow = if origins.is_empty() || origins.contains(&"*") {
        AllowOrigin::any()
    } else {
        let list = origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o)
                    .map_err(|_| format!("ALLOWED_ORIGINS: {o:?} is not a valid origin"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(list)
    };
    Ok(CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("x-replicache-requestid"),
        ])
        .max_age(Duration::from_secs(600)))
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            // Without a SIGTERM handler, Ctrl-C still stops the server.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}

async fn push(State(state): State<DevState>, request: Request) -> Response {
    handle(&state.api, Operation::Push, request).await
}

async fn pull(State(state): State<DevState>, request: Request) -> Response {
    handle(&state.api, Operation::Pull, request).await
}

async fn poke_ticket(State(state): State<DevState>, request: Request) -> Response {
    handle(&state.api, Operation::Poke, request).await
}

/// Hands the request to the same HTTP layer the Lambda functions use.
async fn handle(api: &Api, op: Operation, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    // Read no more than the API accepts; beyond that, answer as it does (a failed read
    // means the client has gone, so that answer is never seen).
    let limit = api.max_body_bytes().saturating_add(1);
    let body: Bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return api.body_too_large().into_response(),
    };
    let response = api
        .handle(
            op,
            ApiRequest {
                method: &parts.method,
                query: parts.uri.query(),
                headers: &parts.headers,
                body: &body,
                jwt_sub: None,
                request_id: None,
            },
        )
        .await;
    crate::http_api::encode(&parts.headers, response)
        .map(axum::body::Body::from)
        .into_response()
}

#[derive(serde::Deserialize)]
struct PokeQuery {
    #[serde(rename = "spaceID")]
    space_id: Option<String>,
    /// A ticket from `/api/replicache/poke-ticket` (browsers cannot set headers on a
    /// WebSocket), as API Gateway's WebSocket API takes it.
    ticket: Option<String>,
}

/// Opens a poke WebSocket for the space and user a valid ticket names, if the space policy
/// still lets that user listen.
async fn poke(
    State(state): State<DevState>,
    Query(query): Query<PokeQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let space = query.space_id.unwrap_or_else(|| DEFAULT_SPACE.to_owned());
    let ticket = match state
        .tickets
        .admit(query.ticket.as_deref(), &space, state.engine.now())
    {
        Ok(ticket) => ticket,
        Err(e) => return (StatusCode::UNAUTHORIZED, e.to_string()).into_response(),
    };
    let caller = Caller {
        user: ticket.user.clone(),
        space,
    };
    // Recorded in the store as on AWS, so that the engine pokes it, and closes it once the
    // space policy refuses its user.
    // Open before it is recorded: a poke in between must find it.
    let id = connection_id();
    let signal = state.pokes.open(&id);
    let connected = state
        .engine
        .connect_with_ticket(&caller, &id, &ticket)
        .await;
    if connected.is_err() {
        state.pokes.forget(&id);
    }
    if let Err(e) = connected {
        let (status, why) = crate::http_api::engine_status(e);
        if status.is_server_error() {
            // The error's own text may name internals: it goes to the log only.
            warn!(connection = id, status = status.as_u16(), %why, "poke connection failed");
            let message = crate::http_api::server_error_message(status);
            return (status, message).into_response();
        }
        return (status, why).into_response();
    }
    let (heartbeat, shutdown) = (state.heartbeat, state.shutdown.clone());
    upgrade.on_upgrade(move |socket| async move {
        serve_pokes(socket, signal, heartbeat, shutdown).await;
        state.pokes.forget(&id);
        if let Err(e) = state.engine.disconnect(&id).await {
            warn!(connection = id, error = %e, "could not forget a closed connection");
        }
    })
}

/// A random id for a poke connection, as API Gateway gives one.
fn connection_id() -> String {
    use base64::Engine as _;
    let mut id = [0u8; 12];
    if getrandom::fill(&mut id).is_err() {
        id.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

/// Serves one poke connection until it closes, fails, is closed by the engine (the space
/// policy refused its user), or the server shuts down; sends a ping every `heartbeat` so that
/// proxies and browsers keep an idle connection open.
async fn serve_pokes(
    mut socket: WebSocket,
    mut signal: watch::Receiver<Signal>,
    heartbeat: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    loop {
        let outgoing = tokio::select! {
            // Pokes first: a poke already due goes out before anything read after it is
            // answered (so a client's ping round trip also flushes its pokes).
            biased;
            changed = signal.changed() => match changed.map(|()| *signal.borrow_and_update()) {
                Ok(Signal { closed: false, .. }) => Message::Text(POKE.into()),
                Ok(Signal { closed: true, .. }) => {
                    debug!("the space policy refuses this connection's user; closing it");
                    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Close(None))).await;
                    break;
                }
                Err(_) => break,
            },
            _ = ticks.tick() => Message::Ping(Vec::new().into()),
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => continue,
            },
            _ = shutdown.changed() => {
                let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Close(None))).await;
                break;
            }
        };
        match tokio::time::timeout(SEND_TIMEOUT, socket.send(outgoing)).await {
            Ok(Ok(())) => {}
            _ => {
                debug!("poke connection too slow or gone; closing it");
                break;
            }
        }
    }
}

/// A path the web client's directory does not have: when the directory has no `index.html`
/// at all, the answer says that the client is not built and how to build it, instead of a
/// bare 404 a developer would take for a broken server.
async fn not_found(web_dir: PathBuf) -> Response {
    if tokio::fs::try_exists(web_dir.join("index.html"))
        .await
        .unwrap_or(false)
    {
        return (StatusCode::NOT_FOUND, "Not found\n").into_response();
    }
    let message = format!(
        "The web client is not built: {} has no index.html.\n\
         The chat demo: ./scripts/dev builds it and starts this server.\n\
         Your own app: point --web-dir (or WEB_DIR) at your client's build.\n",
        web_dir.display()
    );
    (StatusCode::NOT_FOUND, message).into_response()
}

async fn log_request(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    info!(
        %method,
        path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}
