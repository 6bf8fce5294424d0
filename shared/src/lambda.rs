//! The Lambda entry point: each function is one [`serve`] call.
//!
//! ```no_run
//! use replicache_dynamodb::{lambda, App, Mutators, Operation};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), lambda_http::Error> {
//!     let app = App::new(Mutators::new()); // your application
//!     lambda::serve(Operation::Push, app).await
//! }
//! ```

use std::convert::Infallible;
use std::sync::Arc;

use lambda_http::request::RequestContext;
use lambda_http::{service_fn, Body, Request, RequestExt, Response};

use crate::app::{App, Operation};
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
/// and the AWS SDK's own variables. A missing or bad setting is logged (naming the variable)
/// and fails the function's init: the process exits with an error before it takes a request.
pub async fn serve(op: Operation, app: App) -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    let api = match api_from_env(app).await {
        Ok(api) => api,
        Err(e) => {
            tracing::error!(variable = e.name(), "configuration error: {e}");
            return Err(e.into());
        }
    };
    let api = &api;
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, Infallible>(handle(api, op, req).await)
    }))
    .await
}

/// The API of `app` as the environment configures it.
async fn api_from_env(app: App) -> Result<Api, ConfigError> {
    let settings = Settings::from_env(AuthMode::Jwt)?;
    let store = DynamoStore::from_env(settings.required_table_name()?)
        .await
        .map_err(|e| ConfigError::new(e.variable(), e.message()))?;
    let engine = Engine::new(Arc::new(store), app, settings.engine_config());
    Ok(Api::new(
        engine,
        settings.auth_mode,
        settings.max_body_bytes,
    ))
}

/// Handles one API Gateway request (HTTP API, payload 2.0) for `op`: what [`serve`] does
/// per invocation, for tests and custom runtimes.
pub async fn handle(api: &Api, op: Operation, req: Request) -> Response<Body> {
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
    response.map(Body::from)
}
