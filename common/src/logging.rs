//! Tracing set-up shared by the binaries: human-readable lines by default, JSON lines with
//! `--log-format json`; the level comes from `RUST_LOG` (default `info`).
//!
//! Trace exporting (OpenTelemetry, off by default) is set up here too, as one more layer
//! of the same subscriber: see [`crate::telemetry`].
//!
//! Text lines are coloured only when stderr is a terminal and `NO_COLOR` is not set, so a
//! log redirected to a file or collected by journald holds plain text.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, Layer};

use crate::telemetry::Telemetry;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format {other:?} (expected text or json)"
            )),
        }
    }
}

/// Installs the global subscriber, writing to stderr, with trace exporting when the
/// environment asks for it (see [`crate::telemetry`]; then it must be called inside the
/// tokio runtime). Calling it twice is harmless: the second call installs nothing and
/// returns a [`Telemetry`] that exports nothing.
pub fn init(format: LogFormat, service: &str) -> Telemetry {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = colour_wanted(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().flatten_event(true).boxed(),
    };
    let (telemetry, traces) = crate::telemetry::layer(service);
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .with(traces)
        .try_init();
    match installed {
        Ok(()) => telemetry,
        Err(_) => Telemetry::default(),
    }
}

/// Whether text lines get ANSI colours: only on a terminal, and never when `NO_COLOR` is
/// set to anything but the empty string (<https://no-color.org>).
fn colour_wanted(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|value| value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_wanted(true, None));
        assert!(colour_wanted(true, Some("".as_ref())));
        assert!(!colour_wanted(true, Some("1".as_ref())));
        assert!(!colour_wanted(false, None));
    }
}
