//! Logging setup.

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber: JSON lines when running in Lambda (CloudWatch parses
/// them), readable lines elsewhere. The levels come from `RUST_LOG` (default `info`): a
/// level and `target=level` pairs, comma-separated, such as `warn,replicache_dynamodb=debug`.
pub(crate) fn init() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(Level::INFO));
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let registry = tracing_subscriber::registry().with(filter);
    // Another subscriber may already be installed (tests): keep it.
    let _ = if in_lambda {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init()
    } else {
        // Colours only on a terminal: a log written to a file or a pipe stays plain text.
        let ansi = std::io::stdout().is_terminal();
        registry
            .with(tracing_subscriber::fmt::layer().with_ansi(ansi))
            .try_init()
    };
}
