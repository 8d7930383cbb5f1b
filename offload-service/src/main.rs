use std::io::IsTerminal;

use clap::Parser;
use kubevision_offload::{shutdown, Config, Server};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Plain text unless a person is watching: container logs keep no colour codes.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = Config::parse();
    tracing::info!(
        ?config,
        "starting kubevision-offload {}",
        env!("CARGO_PKG_VERSION")
    );
    let result = async { Server::bind(config).await?.run(shutdown::signal()).await }.await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("kubevision-offload: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
