//! Structured logs with `tracing`, written to standard error so that standard
//! output carries only command output.
//!
//! The filter is the first of: `-v` (debug) or `-vv` (trace), `RUST_LOG`,
//! the config's `log.level`. The format (text or JSON lines) is `log.format`.

use meshd_config::{Log, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `verbosity` counts `-v` flags; `rust_log`
/// is the value of `RUST_LOG`, if set. An invalid filter is replaced by
/// `info`, with a warning that says so.
pub fn init(verbosity: u8, rust_log: Option<&str>, log: &Log) {
    let mut warning = None;
    let filter = match (verbosity, rust_log.filter(|v| !v.trim().is_empty())) {
        (1, _) => EnvFilter::new("debug"),
        (2.., _) => EnvFilter::new("trace"),
        (0, Some(directives)) => EnvFilter::try_new(directives).unwrap_or_else(|err| {
            warning = Some(format!("RUST_LOG={directives:?} is not a valid filter ({err}); logging at info"));
            EnvFilter::new("info")
        }),
        (0, None) => EnvFilter::try_new(&log.level).unwrap_or_else(|err| {
            warning =
                Some(format!("log.level = {:?} is not a valid filter ({err}); logging at info", log.level));
            EnvFilter::new("info")
        }),
    };
    // Colours only for a person at a terminal, not in files and journals.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    // `try_init` fails only if a subscriber is already installed (tests); the
    // existing one keeps working.
    let _ = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
}
