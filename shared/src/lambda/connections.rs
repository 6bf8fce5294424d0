//! `$connect` and `$disconnect` of the poke WebSocket API: a connection opens with a poke
//! ticket for its space (browsers cannot set headers on a WebSocket), is refused unless the
//! ticket is valid and the space policy lets its user listen, and is recorded for the push
//! function's pokes until it closes or expires.

use http::StatusCode;
use lambda_http::aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use tracing::{info, warn};

use crate::engine::{Caller, Engine};
use crate::ticket::TicketKey;

/// Answers a WebSocket event: 200 accepts a `$connect`, anything else refuses it (API
/// Gateway then answers the handshake with that status). Other routes answer 200: the
/// keep-alive is answered by API Gateway itself and never reaches a function.
pub(crate) async fn handle(
    engine: &Engine,
    tickets: Option<&TicketKey>,
    ctx: &ApiGatewayWebsocketProxyRequestContext,
    req: &Request,
) -> Response<Body> {
    let id = ctx.connection_id.as_deref().unwrap_or_default();
    match ctx.event_type.as_deref() {
        Some("CONNECT") => match connect(engine, tickets, id, req).await {
            Ok(caller) => {
                info!(connection = id, space = %caller.space, user = %caller.user, "poke connection opened");
                respond(StatusCode::OK, "")
            }
            Err((status, why)) if status.is_server_error() => {
                warn!(connection = id, status = status.as_u16(), %why, "poke connection failed");
                // The error's own text may name internals: the log has it, under this id.
                let request_id = ctx.request_id.as_deref().unwrap_or_default();
                let message = crate::http_api::server_error_message(status);
                respond(status, &format!("{message} (request id {request_id:?})"))
            }
            Err((status, why)) => {
                info!(connection = id, status = status.as_u16(), %why, "poke connection refused");
                respond(status, &why)
            }
        },
        Some("DISCONNECT") => {
            if let Err(e) = engine.disconnect(id).await {
                // Best effort: the entry expires anyway, and a poke to it answers 410.
                warn!(connection = id, error = %e, "could not forget a closed connection");
            }
            respond(StatusCode::OK, "")
        }
        _ => respond(StatusCode::OK, ""),
    }
}

async fn connect(
    engine: &Engine,
    tickets: Option<&TicketKey>,
    id: &str,
    req: &Request,
) -> Result<Caller, (StatusCode, String)> {
    let key = tickets.ok_or_else(|| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "POKE_TICKET_KEY is not set".to_owned(),
        )
    })?;
    let params = req.query_string_parameters();
    let space = params
        .first("spaceID")
        .unwrap_or(crate::http_api::DEFAULT_SPACE);
    let ticket = key
        .admit(params.first("ticket"), space, engine.now())
        .map_err(|e| (StatusCode::UNAUTHORIZED, e.to_string()))?;
    let caller = Caller {
        user: ticket.user.clone(),
        space: ticket.space.clone(),
    };
    engine
        .connect_with_ticket(&caller, id, &ticket)
        .await
        .map_err(crate::http_api::engine_status)?;
    Ok(caller)
}

fn respond(status: StatusCode, message: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Body::from(message.to_owned()))
        .expect("a status and a text body make a response")
}
