//! A local stand-in for API Gateway's WebSocket management API, as the real SDK calls it:
//! `POST /{stage}/@connections/{id}` delivers to a known connection, answers 410
//! `GoneException` for an unknown one, and takes as long as the test says for a slow one;
//! `DELETE /{stage}/@connections/{id}` closes one.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

/// What a post saw, for the test to check.
pub type Observe = Arc<dyn Fn(&str) -> u64 + Send + Sync>;

#[derive(Clone, Default)]
struct Shared {
    connections: Arc<Mutex<HashSet<String>>>,
    slow: Arc<Mutex<HashMap<String, Duration>>>,
    posts: Arc<Mutex<Vec<(String, String, u64)>>>,
    closed: Arc<Mutex<Vec<String>>>,
    observe: Arc<Mutex<Option<Observe>>>,
}

/// The fake, serving on a free port until dropped with its runtime.
pub struct FakeManagement {
    /// The stage's endpoint, as `POKE_ENDPOINT` takes it: `http://127.0.0.1:<port>/live`.
    pub endpoint: String,
    shared: Shared,
}

impl FakeManagement {
    /// Starts the fake on 127.0.0.1.
    pub async fn start() -> Self {
        let shared = Shared::default();
        let app = Router::new()
            .route("/{stage}/@connections/{id}", post(deliver).delete(close))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeManagement {
            endpoint: format!("http://127.0.0.1:{port}/live"),
            shared,
        }
    }

    /// Makes `id` a live connection.
    pub fn open(&self, id: &str) {
        self.shared
            .connections
            .lock()
            .unwrap()
            .insert(id.to_owned());
    }

    /// Makes posts to `id` take `delay` (it stays live).
    pub fn slow(&self, id: &str, delay: Duration) {
        self.open(id);
        self.shared
            .slow
            .lock()
            .unwrap()
            .insert(id.to_owned(), delay);
    }

    /// Calls `observe` with the connection id on every post and records what it returns
    /// (say, the space version visible then).
    pub fn observe(&self, observe: Observe) {
        *self.shared.observe.lock().unwrap() = Some(observe);
    }

    /// The posts delivered so far, as (connection id, data, observed); clears them.
    pub fn take(&self) -> Vec<(String, String, u64)> {
        std::mem::take(&mut self.shared.posts.lock().unwrap())
    }

    /// The connections closed so far (through `DeleteConnection`), in order; clears them.
    pub fn take_closed(&self) -> Vec<String> {
        std::mem::take(&mut self.shared.closed.lock().unwrap())
    }

    /// A management API client pointed at the fake, with test credentials.
    pub fn client(&self) -> aws_sdk_apigatewaymanagement::Client {
        let config = aws_sdk_apigatewaymanagement::Config::builder()
            .behavior_version(aws_sdk_apigatewaymanagement::config::BehaviorVersion::latest())
            .region(aws_sdk_apigatewaymanagement::config::Region::new(
                "us-east-1",
            ))
            .credentials_provider(aws_sdk_apigatewaymanagement::config::Credentials::new(
                "local", "local", None, None, "test",
            ))
            .endpoint_url(&self.endpoint)
            .http_client(replicache_dynamodb::store::dynamo::http_client())
            .build();
        aws_sdk_apigatewaymanagement::Client::from_conf(config)
    }
}

async fn deliver(
    State(shared): State<Shared>,
    Path((_stage, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let delay = shared.slow.lock().unwrap().get(&id).copied();
    if let Some(delay) = delay {
        // A client on a bad network: the post takes this long (not a synchronization).
        tokio::time::sleep(delay).await;
    }
    if !shared.connections.lock().unwrap().contains(&id) {
        return gone();
    }
    let observed = shared.observe.lock().unwrap().clone().map_or(0, |f| f(&id));
    let data = String::from_utf8_lossy(&body).into_owned();
    shared.posts.lock().unwrap().push((id, data, observed));
    StatusCode::OK.into_response()
}

async fn close(
    State(shared): State<Shared>,
    Path((_stage, id)): Path<(String, String)>,
) -> Response {
    if !shared.connections.lock().unwrap().remove(&id) {
        return gone();
    }
    shared.closed.lock().unwrap().push(id);
    StatusCode::NO_CONTENT.into_response()
}

/// What the management API answers for a connection that is gone.
fn gone() -> Response {
    (
        StatusCode::GONE,
        [
            ("x-amzn-errortype", "GoneException"),
            ("content-type", "application/json"),
        ],
        r#"{"message":null}"#,
    )
        .into_response()
}
