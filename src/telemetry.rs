//! Logging to stderr through `tracing`: `RUST_LOG` filters (default `info`), `[log] format`
//! picks text or JSON. The AWS signing crates are always silenced below `warn`: at trace
//! level they print canonical requests, and nothing that leads to a signature is logged.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Directives appended to every filter, whatever `RUST_LOG` says.
const ALWAYS: &[&str] = &[
    "aws_sigv4=warn",
    "aws_smithy_runtime=warn",
    "aws_config=warn",
    "aws_smithy_runtime_api=warn",
];

/// Installs the global subscriber. Safe to call once; later calls are ignored.
pub fn init(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for d in ALWAYS {
        if let Ok(d) = d.parse() {
            filter = filter.add_directive(d);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
