//! The `dolphin-bridge` binary: parses the command line and wires the parts together.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use dolphin_bridge::cli::{Cli, Command};
use dolphin_bridge::config::Config;
use dolphin_bridge::server::{self, AppState};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DOLPHIN_BRIDGE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = Config::load(&cli.config)?;
    match cli.command {
        Command::Properties => {
            print!("{}", dolphin_bridge::properties(&config));
            Ok(())
        }
        Command::Check => {
            let runtime = tokio::runtime::Runtime::new()?;
            let _guard = runtime.enter();
            let registry = dolphin_bridge::build_registry(&config)?;
            for tenant in registry.snapshot().all() {
                println!(
                    "tenant {}: owner {}, adapter {} (sha256 {}, {}@{})",
                    tenant.name,
                    tenant.owner,
                    tenant.adapter.path.display(),
                    &tenant.adapter.content_hash[..12],
                    dolphin_bridge::runtime::WIT_PACKAGE,
                    tenant.adapter.wit_version,
                );
            }
            println!("configuration OK");
            Ok(())
        }
        Command::Serve => tokio::runtime::Runtime::new()?.block_on(serve(config)),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let registry = Arc::new(dolphin_bridge::build_registry(&config)?);
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, tenants = registry.snapshot().all().len(), "dolphin-bridge started");
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on http://{address}")?;
    stdout.flush()?;
    let state = Arc::new(AppState {
        server: config.server.clone(),
        registry,
    });
    server::serve(listener, state).await
}
