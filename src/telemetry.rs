//! Log output: text on a terminal, JSON lines when piped, journald under systemd.
//! Logs go to stderr (or the journal); stdout is reserved for a command's data.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::settings::LogFormat;

/// Noisy dependencies are capped at WARN unless the filter names them.
const QUIET: &str = "sqlx=warn,sea_orm=warn,sea_orm_migration=warn,hyper=warn,rustls=warn,tokio_cron_scheduler=warn";

/// The format `auto` resolves to in this process.
pub fn resolve(format: LogFormat) -> LogFormat {
    match format {
        LogFormat::Auto if std::env::var_os("JOURNAL_STREAM").is_some() => LogFormat::Journald,
        LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Text,
        LogFormat::Auto => LogFormat::Json,
        other => other,
    }
}

/// Install the global subscriber. `filter` is the configured one; `RUST_LOG` wins when set.
pub fn init(format: LogFormat, filter: &str) -> Result<(), String> {
    let wanted = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_owned());
    let env_filter = EnvFilter::try_new(format!("{QUIET},{wanted}"))
        .map_err(|e| format!("log filter '{wanted}' is not valid: {e}"))?;
    let registry = tracing_subscriber::registry().with(env_filter);
    let result = match resolve(format) {
        LogFormat::Journald => {
            let layer = tracing_journald::layer().map_err(|e| {
                format!("cannot connect to journald ({e}); use --log-format text or json")
            })?;
            registry.with(layer).try_init()
        }
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Text | LogFormat::Auto => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}
