//! The smallest `lambda_http` function: the benchmark's cold-start baseline. It is built with
//! the same profile and command as the push and pull functions, so that the difference in
//! init time and size is what the engine adds.

use lambda_http::{service_fn, Body, Error, Request, Response};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(|_: Request| async {
        Ok::<_, Error>(Response::new(Body::from("hello")))
    }))
    .await
}
