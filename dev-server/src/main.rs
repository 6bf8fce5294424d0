//! The local server: the same push and pull handlers as the Lambda functions, realtime pokes
//! over a WebSocket, and the demo web client, in one process on 127.0.0.1.

mod pokes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use bytes::Bytes;
use clap::Parser;
use replicache_dynamodb::auth::AuthMode;
use replicache_dynamodb::config::Settings;
use replicache_dynamodb::http_api::{Api, ApiRequest, Operation, DEFAULT_SPACE};
use replicache_dynamodb::store::dynamo::DynamoStore;
use replicache_dynamodb::store::memory::MemoryStore;
use replicache_dynamodb::store::Store;
use replicache_dynamodb::Engine;
use tokio::sync::watch;
use tower_http::services::ServeDir;
use tracing::info;

use crate::pokes::Pokes;

/// Command line of the local server.
#[derive(Parser, Debug)]
#[command(version, about = "Replicache sync server for local development")]
struct Args {
    /// Port to listen on, on 127.0.0.1 (0: any free port).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
    /// Directory of the built demo client, served at `/`.
    #[arg(long, env = "WEB_DIR", default_value = "web/dist")]
    web_dir: PathBuf,
    /// Create the DynamoDB table if it does not exist (with TABLE_NAME, for DynamoDB Local).
    #[arg(long)]
    create_table: bool,
    /// Seconds between heartbeats on idle poke connections.
    #[arg(long, env = "POKE_HEARTBEAT_SECS", default_value_t = 30)]
    heartbeat_secs: u64,
}

#[derive(Clone)]
struct AppState {
    api: Api,
    pokes: Arc<Pokes>,
    heartbeat: Duration,
    shutdown: watch::Receiver<bool>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    replicache_dynamodb::telemetry::init();
    let args = Args::parse();
    // Locally there is no authorizer: the Authorization header is the user id.
    let settings = Settings::from_env(AuthMode::Header)?;
    let store: Arc<dyn Store> = match &settings.table_name {
        Some(table) => {
            let store = DynamoStore::from_env(table.clone()).await;
            if args.create_table {
                store.create_table().await?;
            }
            info!(table, "store: DynamoDB");
            Arc::new(store)
        }
        None => {
            info!("store: in memory (set TABLE_NAME to use DynamoDB)");
            Arc::new(MemoryStore::new())
        }
    };
    let pokes = Arc::new(Pokes::default());
    let poker = pokes.clone();
    let engine = Engine::new(
        store,
        replicache_dynamodb::chat::mutators(),
        settings.engine_config(),
    )
    .on_commit(Arc::new(move |space, _version| poker.poke(space)));
    let api = Api::new(engine, AuthMode::Header, settings.max_body_bytes);
    let (stop, shutdown) = watch::channel(false);
    let state = AppState {
        api,
        pokes,
        heartbeat: Duration::from_secs(args.heartbeat_secs.max(1)),
        shutdown,
    };
    let app = Router::new()
        .route("/api/replicache/push", any(push))
        .route("/api/replicache/pull", any(pull))
        .route("/api/replicache/poke", get(poke))
        .fallback_service(ServeDir::new(&args.web_dir).fallback(get(missing_demo)))
        .layer(middleware::from_fn(log_request))
        .with_state(state);

    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port))).await?;
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

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}

async fn push(State(state): State<AppState>, request: Request) -> Response {
    handle(&state.api, Operation::Push, request).await
}

async fn pull(State(state): State<AppState>, request: Request) -> Response {
    handle(&state.api, Operation::Pull, request).await
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
    response.into_response()
}

#[derive(serde::Deserialize)]
struct PokeQuery {
    #[serde(rename = "spaceID")]
    space_id: Option<String>,
}

async fn poke(
    State(state): State<AppState>,
    Query(query): Query<PokeQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let space = query.space_id.unwrap_or_else(|| DEFAULT_SPACE.to_owned());
    let receiver = state.pokes.subscribe(&space);
    let (heartbeat, shutdown) = (state.heartbeat, state.shutdown.clone());
    upgrade.on_upgrade(move |socket| pokes::serve(socket, receiver, heartbeat, shutdown))
}

async fn missing_demo() -> Response {
    (
        http::StatusCode::NOT_FOUND,
        "The demo client is not built: run ./scripts/dev (it builds web/ and starts this server).\n",
    )
        .into_response()
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
