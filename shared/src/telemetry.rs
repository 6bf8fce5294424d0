//! Logging setup.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: JSON lines when running in Lambda (CloudWatch parses
/// them), readable lines elsewhere; the level comes from `RUST_LOG` (default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // Another subscriber may already be installed (tests): keep it.
    let _ = if in_lambda {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
}
