//! `meshd`: the peer-to-peer gateway mesh daemon.
//!
//! This binary wires the pure crates to real IO:
//!
//! - `meshd run --config FILE`: run the gateway (see [`meshd::gateway`])
//! - `meshd status [--config FILE | --api ADDR] [--json]`: a running gateway's status
//! - `meshd keys generate --out FILE [--force]`, `meshd keys show FILE`
//! - `meshd config default`, `meshd config check FILE`
//!
//! Command output goes to standard output; logs and errors go to standard
//! error. Exit status: 0 on success, 1 when a command fails, 2 on a usage
//! error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand};
use meshd_config::Config;

mod chain_cmd;
mod config_file;
mod keys;
mod logging;

/// Peer-to-peer gateway mesh daemon: gossips signed proof-of-coverage and
/// energy-meter reports, agrees on one summary per region and epoch, and
/// anchors the aggregates on an EVM chain.
#[derive(Debug, Parser)]
#[command(name = "meshd", version, propagate_version = true)]
struct Cli {
    /// Log more to standard error: -v for debug, -vv for trace. Takes
    /// precedence over RUST_LOG and the config's log.level.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway: join the mesh, gossip and validate reports, take
    /// part in its committee's consensus, serve the local API. Stops
    /// cleanly on Ctrl-C or SIGTERM.
    Run {
        /// The configuration file (see `meshd config default`).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print the status of a running gateway, read from its local API.
    Status {
        /// Read the API address (`api.listen`) from this configuration file.
        #[arg(long, value_name = "FILE", conflicts_with = "api")]
        config: Option<PathBuf>,
        /// The API address, e.g. 127.0.0.1:4180 (default: the default `api.listen`).
        #[arg(long, value_name = "ADDR")]
        api: Option<std::net::SocketAddr>,
        /// Print the raw JSON of GET /v1/status.
        #[arg(long, conflicts_with = "metrics")]
        json: bool,
        /// Print the daemon's metrics (GET /metrics, Prometheus text) instead.
        #[arg(long)]
        metrics: bool,
    },
    /// Create and inspect the gateway's key file.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print and check configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// `meshd chain …`, `meshd prove …` and `meshd verify …`.
    #[command(flatten)]
    Chain(Box<chain_cmd::Command>),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Generate a new gateway identity (ed25519) and anchor key (secp256k1)
    /// from the operating system's random source and write them to a new
    /// key file with mode 0600.
    Generate {
        /// The key file to create; missing directories are created (mode 0700).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace an existing key file. Its identity is lost unless backed up.
        #[arg(long)]
        force: bool,
    },
    /// Print the gateway id (its libp2p peer id) and the anchor address of a
    /// key file. Refuses a file that group or others may read or write.
    Show {
        /// The key file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the default configuration: every section and key, documented,
    /// with its default value.
    Default,
    /// Check a configuration file, with the MESHD_SECTION__KEY
    /// environment overrides applied; print a summary, or every problem with
    /// its key and fix.
    Check {
        /// The configuration file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logging follows the log section of the configuration file the command
    // reads, if any, with the MESHD_LOG__* overrides applied; a broken file
    // or override is reported by the command itself.
    let file = match &cli.command {
        Command::Run { config } => Some(config.clone()),
        Command::Config(ConfigCommand::Check { file }) => Some(file.clone()),
        _ => None,
    };
    let log = config_file::meshd_env()
        .ok()
        .and_then(|env| match &file {
            Some(file) => config_file::load(file, &env).ok(),
            None => Config::load("", env).ok(),
        })
        .map(|config| config.log)
        .unwrap_or_default();
    let rust_log = std::env::var("RUST_LOG").ok();
    logging::init(cli.verbose, rust_log.as_deref(), &log);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// How long `meshd status` waits for the daemon's answer.
const STATUS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn run_gateway(file: &std::path::Path) -> anyhow::Result<()> {
    let env = config_file::meshd_env()?;
    let config = config_file::load(file, &env)?;
    let keys = keys::read(&config.identity.key_file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stopping");
            on_signal.cancel();
        });
        meshd::gateway::run(config, keys, shutdown).await
    })
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGTERM; Ctrl-C still stops the gateway");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn print_status(
    config: Option<PathBuf>,
    api: Option<std::net::SocketAddr>,
    json: bool,
    metrics: bool,
) -> anyhow::Result<()> {
    let address = match (config, api) {
        (Some(file), _) => config_file::load(&file, &config_file::meshd_env()?)?.api.listen,
        (None, Some(address)) => address,
        (None, None) => Config::default().api.listen,
    };
    let path = if metrics { "/metrics" } else { "/v1/status" };
    let (code, body) = meshd::gateway::api::get_blocking(address, path, STATUS_TIMEOUT)?;
    if code != 200 {
        anyhow::bail!("the daemon at {address} answered HTTP {code}: {body}");
    }
    if metrics {
        print!("{body}");
    } else if json {
        println!("{body}");
    } else {
        let status: meshd::gateway::status::Status = serde_json::from_str(&body).map_err(|e| {
            anyhow::anyhow!("the daemon at {address} sent a status this meshd cannot read: {e}")
        })?;
        print!("{}", status.render());
    }
    Ok(())
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { config } => run_gateway(&config)?,
        Command::Status { config, api, json, metrics } => print_status(config, api, json, metrics)?,
        Command::Keys(KeysCommand::Generate { out, force }) => {
            let keys = keys::generate()?;
            let existed = out.exists();
            keys::write(&out, &keys, force)?;
            if existed {
                tracing::warn!(path = %out.display(), "replaced an existing key file");
            }
            tracing::debug!(path = %out.display(), "wrote key file");
            println!("gateway id:     {}", keys.identity.gateway_id());
            println!("anchor address: {}", keys.anchor.address());
            println!("key file:       {} (mode 0600; back it up, keep it secret)", out.display());
        }
        Command::Keys(KeysCommand::Show { file }) => {
            let keys = keys::read(&file)?;
            println!("gateway id:     {}", keys.identity.gateway_id());
            println!("anchor address: {}", keys.anchor.address());
        }
        Command::Config(ConfigCommand::Default) => {
            print!("{}", meshd_config::default_toml());
        }
        Command::Config(ConfigCommand::Check { file }) => {
            let env = config_file::meshd_env()?;
            let config = config_file::load(&file, &env)?;
            tracing::debug!(path = %file.display(), overrides = env.len(), "configuration is valid");
            println!("OK {}: {}", file.display(), config.summary());
        }
        Command::Chain(command) => chain_cmd::run(*command)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn keys_generate_needs_an_output_path() {
        assert!(Cli::try_parse_from(["meshd", "keys", "generate"]).is_err());
        let cli = Cli::try_parse_from(["meshd", "-vv", "keys", "generate", "--out", "k", "--force"])
            .expect("valid");
        assert_eq!(cli.verbose, 2);
        assert!(matches!(cli.command, Command::Keys(KeysCommand::Generate { force: true, .. })));
    }
}
