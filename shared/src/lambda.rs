//! The Lambda entry point: each function is one [`serve`] call: `Operation::Push`,
//! `Operation::Pull`, or `Operation::Poke` (the poke function: its ticket route and the
//! WebSocket API's `$connect` and `$disconnect`).
//!
//! ```no_run
//! use replicache_dynamodb::{lambda, App, Mutators, Operation};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), lambda::Error> {
//!     let app = App::new(Mutators::new()); // your application
//!     lambda::serve(Operation::Push, app).await
//! }
//! ```

use std::convert::Infallible;
use std::sync::Arc;

use lambda_http::request::RequestContext;
use lambda_http::{service_fn, Body, LambdaEvent, Request, RequestExt, Response};

mod connections;
mod pokes;
mod queue;

pub use pokes::ApiGatewayPoker;
pub use queue::{commit_event, SqsQueue};

/// The committer's event (a batch of the push queue's messages) and its answer (the
/// messages to deliver again), as [`commit_event`] takes and gives them.
pub use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};

/// Why a function could not start or stopped: what [`serve`] returns, so that a function's
/// `main` needs no dependency on `lambda_http` of its own.
pub use lambda_http::Error;

use std::time::Duration;

use crate::access::Operation;
use crate::app::App;
use crate::auth::AuthMode;
use crate::config::{ConfigError, Settings};
use crate::engine::Engine;
use crate::http_api::{Api, ApiRequest};
use crate::store::dynamo::DynamoStore;

/// Serves `op` (push or pull) of `app` as a Lambda function behind API Gateway (HTTP API,
/// payload 2.0) until the runtime stops.
///
/// The store, the SDK client and the settings are made once per execution environment, from
/// the environment: `TABLE_NAME` (required), `AUTH_MODE` (`jwt` by default: the user is the
/// `sub` claim API Gateway's JWT authorizer verified), `SCHEMA_VERSION`, `MAX_BODY_BYTES`,
/// `APP_BUNDLE` (a JavaScript app to add to `app`), `PUSH_PATH` and `PUSH_QUEUE_URL` (the
/// push function's queue for hot spaces, [`serve_commits`]), and the AWS SDK's own variables. A missing or bad setting is logged (naming the variable)
/// and fails the function's init: the process exits with an error before it takes a request.
pub async fn serve(op: Operation, app: App) -> Result<(), Error> {
    crate::telemetry::init();
    let api = match api_from_env(op, app).await {
        Ok(api) => api,
        Err(e) => {
            tracing::error!(variable = e.name(), "configuration error: {e}");
            return Err(e.into());
        }
    };
    let api = &api;
    let metrics = install_metrics(op);
    metrics::counter!(crate::telemetry_names::COLD_STARTS).increment(1);
    lambda_http::run(service_fn(move |req: Request| async move {
        let response = handle(api, op, req).await;
        // One EMF document per invocation, on stdout where Lambda's log capture reads it.
        if let Some(metrics) = metrics {
            if let Err(e) = metrics.flush(std::io::stdout()) {
                tracing::warn!(error = %e, "could not write the metrics");
            }
        }
        Ok::<_, Infallible>(response)
    }))
    .await
}

/// Installs the process's metrics recorder: CloudWatch Embedded Metric Format, namespace
/// `ReplicacheDynamoDB`, dimension `function` (`push`, `pull` or `poke`). Returns the
/// collector to flush after each invocation (`None` if another recorder was installed
/// first, as in a test that installs its own).
pub fn install_metrics(op: Operation) -> Option<&'static metrics_cloudwatch_embedded::Collector> {
    install_metrics_for(op.name())
}

/// [`install_metrics`] for the function named `function`.
fn install_metrics_for(
    function: &'static str,
) -> Option<&'static metrics_cloudwatch_embedded::Collector> {
    static INSTALLED: std::sync::OnceLock<Option<&'static metrics_cloudwatch_embedded::Collector>> =
        std::sync::OnceLock::new();
    *INSTALLED.get_or_init(|| {
        metrics_cloudwatch_embedded::Builder::new()
            .cloudwatch_namespace("ReplicacheDynamoDB")
            .with_dimension("function", function)
            .init()
            .map_err(|e| tracing::warn!(error = %e, "no metrics"))
            .ok()
    })
}

/// Serves the committer of `app` as a Lambda function until the runtime stops: the function
/// the push queue's event source mapping invokes with batches of queued pushes
/// ([`commit_event`]), answering the messages to deliver again (`ReportBatchItemFailures`).
/// Its environment is the push function's: `TABLE_NAME`, `POKE_ENDPOINT` for the pokes
/// after its commits, and the rest as [`serve`] reads them.
pub async fn serve_commits(app: App) -> Result<(), Error> {
    crate::telemetry::init();
    let engine = match engine_from_env(Operation::Push, app).await {
        Ok((engine, _)) => engine,
        Err(e) => {
            tracing::error!(variable = e.name(), "configuration error: {e}");
            return Err(e.into());
        }
    };
    let engine = &engine;
    let metrics = install_metrics_for("commit");
    metrics::counter!(crate::telemetry_names::COLD_STARTS).increment(1);
    let handler = move |event: LambdaEvent<SqsEvent>| async move {
        let response = commit_event(engine, event.payload).await;
        if let Some(metrics) = metrics {
            if let Err(e) = metrics.flush(std::io::stdout()) {
                tracing::warn!(error = %e, "could not write the metrics");
            }
        }
        Ok::<_, Infallible>(response)
    };
    lambda_http::lambda_runtime::run(service_fn(handler)).await
}

/// The engine of `app` for `op` as the environment configures it, with its settings.
async fn engine_from_env(op: Operation, app: App) -> Result<(Engine, Settings), ConfigError> {
    let settings = Settings::from_env(AuthMode::Jwt)?;
    let table = settings.required_table_name()?;
    let app = settings.app(app)?;
    // One SDK configuration (credentials, region, HTTP client) for every client.
    let shared = crate::store::dynamo::load_sdk_config().await;
    let store = DynamoStore::from_shared_config(&shared, table)
        .map_err(|e| ConfigError::new(e.variable(), e.message()))?;
    if settings.warm_up {
        store.warm_up().await;
    }
    let mut engine = Engine::new(Arc::new(store), app, settings.engine_config());
    if op == Operation::Push {
        if let Some(poker) = poker_from_env(&shared)? {
            engine = engine.with_poker(Arc::new(poker));
        }
        if let Some(url) = &settings.push_queue_url {
            let client = aws_sdk_sqs::Client::new(&shared);
            engine = engine.with_queue(Arc::new(SqsQueue::new(client, url)));
        }
    }
    Ok((engine, settings))
}

/// The API of `app` for `op` as the environment configures it.
async fn api_from_env(op: Operation, app: App) -> Result<Api, ConfigError> {
    let (engine, settings) = engine_from_env(op, app).await?;
    let api = Api::new(engine, settings.auth_mode, settings.max_body_bytes);
    let key = crate::ticket::TicketKey::from_env()
        .map_err(|e| ConfigError::new("POKE_TICKET_KEY", e.to_string()))?;
    Ok(match key {
        Some(key) => api.with_tickets(key),
        None if op == Operation::Poke => {
            return Err(ConfigError::new(
                "POKE_TICKET_KEY",
                "not set: the poke function signs tickets with it",
            ))
        }
        None => api,
    })
}

/// The poker of the push function: `POKE_ENDPOINT` is the WebSocket API stage's management
/// endpoint (`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`), unset or empty
/// for no pokes; `POKE_BUDGET_MS` bounds the time a push spends poking (default 500).
fn poker_from_env(shared: &aws_config::SdkConfig) -> Result<Option<ApiGatewayPoker>, ConfigError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let Some(endpoint) = var("POKE_ENDPOINT") else {
        return Ok(None);
    };
    let endpoint = endpoint.trim().trim_end_matches('/').to_owned();
    if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
        return Err(ConfigError::new(
            "POKE_ENDPOINT",
            format!("{endpoint:?} is not an http(s) URL"),
        ));
    }
    let budget = match var("POKE_BUDGET_MS") {
        None => DEFAULT_POKE_BUDGET,
        Some(v) => Duration::from_millis(v.trim().parse().map_err(|_| {
            ConfigError::new(
                "POKE_BUDGET_MS",
                format!("{v:?} is not a number of milliseconds"),
            )
        })?),
    };
    let client = aws_sdk_apigatewaymanagement::Client::from_conf(
        aws_sdk_apigatewaymanagement::config::Builder::from(shared)
            .endpoint_url(endpoint)
            .build(),
    );
    Ok(Some(ApiGatewayPoker::new(client, budget, POKE_CONCURRENCY)))
}

/// How long a push spends poking at most, by default.
const DEFAULT_POKE_BUDGET: Duration = Duration::from_millis(500);
/// Posts to connections in flight at once.
const POKE_CONCURRENCY: usize = 32;

/// Handles one API Gateway event for `op`: an HTTP API request (payload 2.0), or for the
/// poke function a WebSocket API event. What [`serve`] does per invocation, for tests and
/// custom runtimes.
pub async fn handle(api: &Api, op: Operation, req: Request) -> Response<Body> {
    if let Some(RequestContext::WebSocket(ctx)) = req.request_context_ref() {
        return connections::handle(api.engine(), api.tickets(), ctx, &req).await;
    }
    let (jwt_sub, request_id) = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => (
            ctx.authorizer
                .as_ref()
                .and_then(|a| a.jwt.as_ref())
                .and_then(|jwt| jwt.claims.get("sub").cloned()),
            ctx.request_id.clone(),
        ),
        _ => (None, None),
    };
    let response = api
        .handle(
            op,
            ApiRequest {
                method: req.method(),
                query: req.uri().query(),
                headers: req.headers(),
                body: req.body().as_ref(),
                jwt_sub: jwt_sub.as_deref(),
                request_id: request_id.as_deref(),
            },
        )
        .await;
    let response = crate::http_api::encode(req.headers(), response);
    let binary = response
        .headers()
        .contains_key(http::header::CONTENT_ENCODING);
    // A compressed body goes out base64-encoded (lambda_http does it for binary bodies).
    response.map(|bytes| match String::from_utf8(bytes) {
        Ok(text) if !binary => Body::Text(text),
        Ok(text) => Body::Binary(text.into_bytes()),
        Err(e) => Body::Binary(e.into_bytes()),
    })
}
