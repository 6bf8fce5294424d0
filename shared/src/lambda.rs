//! The Lambda entry point both functions share.

use std::convert::Infallible;
use std::sync::Arc;

use lambda_http::request::RequestContext;
use lambda_http::{service_fn, Body, Request, RequestExt, Response};

use crate::auth::AuthMode;
use crate::config::Settings;
use crate::engine::Engine;
use crate::http_api::{Api, ApiRequest, Operation};
use crate::store::dynamo::DynamoStore;

/// Builds the API once per Lambda execution environment (SDK client included) and serves
/// `op` until the runtime stops.
pub async fn run(op: Operation) -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    let settings = Settings::from_env(AuthMode::Jwt)?;
    let table = settings
        .table_name
        .clone()
        .ok_or("TABLE_NAME is not set: the functions need their DynamoDB table")?;
    let store = DynamoStore::from_env(table).await;
    let engine = Engine::new(
        Arc::new(store),
        crate::chat::mutators(),
        settings.engine_config(),
    );
    let api = Api::new(engine, settings.auth_mode, settings.max_body_bytes);
    let api = &api;
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, Infallible>(handle(api, op, req).await)
    }))
    .await
}

/// Handles one API Gateway request (HTTP API, payload 2.0) for `op`.
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
