//! The `dolphin-bridge` binary: parses the command line and wires the parts together.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use dolphin_bridge::cli::RemoteArgs;
use dolphin_bridge::cli::{Cli, Command, DeadLetterCommand, LogFormat, PluginCommand};
use dolphin_bridge::config::Config;
use dolphin_bridge::deploy_client::{Action, Remote};
use dolphin_bridge::registry::AdapterRegistry;
use dolphin_bridge::telemetry::{Exporter, WithTraceId};
use dolphin_bridge::terminal_text::escape;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Runs the command; a failure is one `error:` line on stderr (its causes joined on that line,
/// no backtrace) and exit code 1, so an operator sees what failed and where at a glance.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// `error`'s chain of causes on one line (a cause that only repeats the previous one's text,
/// as `io::Error` contexts do, is left out).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string().replace('\n', " ");
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Commands on a configuration read it before logging starts: `serve` exports traces when
    // `[telemetry]` says so, and the exporter's layer is part of the logging set-up. (An
    // unreadable file is one `error:` line, logged or not.)
    let config = match &cli.command {
        Command::Plugin { .. }
        | Command::Deploy { .. }
        | Command::Versions { .. }
        | Command::Rollback { .. }
        | Command::Canary { .. } => None,
        _ => Some(Config::load(&cli.config)?),
    };
    let exporter = match (&cli.command, &config) {
        (Command::Serve, Some(config)) => {
            let replica = dolphin_bridge::cluster::ReplicaId::current();
            Exporter::start(&config.telemetry, replica.as_str())?
        }
        _ => None,
    };
    start_logs(cli.log_format, exporter.as_ref());
    let command = match cli.command {
        // Adapter tools: no configuration file is read.
        Command::Plugin { command } => return plugin(command),
        // Deployment clients of a running bridge: no configuration file is read.
        Command::Deploy {
            tenant,
            file,
            canary,
            remote,
        } => return remote_deploy(&tenant, Action::Deploy { file, canary }, remote),
        Command::Versions { tenant, remote } => return remote_deploy(&tenant, Action::Versions, remote),
        Command::Rollback { tenant, remote } => return remote_deploy(&tenant, Action::Rollback, remote),
        Command::Canary { action, tenant, remote } => return remote_deploy(&tenant, Action::Canary(action), remote),
        other => other,
    };
    let config = config.expect("loaded for every command on a configuration");
    if config.server.allow_unauthenticated && config.server.incoming_token.is_none() {
        tracing::warn!("the Incoming endpoint accepts requests without a credential (allow_unauthenticated = true)");
    }
    if let Some(url) = config.telemetry.traces_url().filter(|_| exporter.is_some()) {
        tracing::info!(%url, "exporting traces");
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let result = match command {
        Command::Properties => {
            print!("{}", dolphin_bridge::properties(&config));
            Ok(())
        }
        Command::Check => runtime.block_on(check(config)),
        Command::Serve => runtime.block_on(serve(config)),
        Command::DeadLetters { command } => runtime.block_on(dead_letters(config, command)),
        Command::Plugin { .. }
        | Command::Deploy { .. }
        | Command::Versions { .. }
        | Command::Rollback { .. }
        | Command::Canary { .. } => {
            unreachable!("handled before the configuration is loaded")
        }
    };
    // The exporter's client blocks: the spans still batched are sent once the runtime is gone.
    drop(runtime);
    if let Some(exporter) = exporter {
        exporter.shutdown();
    }
    result
}

/// Logs to stderr, filtered by `DOLPHIN_BRIDGE_LOG` (default `info`), as text or JSON lines;
/// with `exporter`, the bridge's spans are exported too and each line logged inside one carries
/// its trace id.
fn start_logs(format: LogFormat, exporter: Option<&Exporter>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DOLPHIN_BRIDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The log sees the bridge's spans whatever the level, to find a line's trace id; spans are
    // only made when traces are on.
    let own_spans = filter_fn(|meta| meta.is_span() && meta.target().starts_with("dolphin_bridge"))
        .with_max_level_hint(tracing::Level::INFO);
    let filter = filter.or(own_spans);
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A closed stderr must not take the bridge down (tracing would report it on stderr).
        .log_internal_errors(false);
    let spans = exporter.map(|exporter| exporter.layer());
    match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(spans)
            .with(
                logs.map_event_format(|f| WithTraceId::new(f, false))
                    .with_filter(filter),
            )
            .init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(spans)
            .with(
                logs.json()
                    .with_current_span(false)
                    .with_span_list(false)
                    .map_event_format(|f| WithTraceId::new(f, true))
                    .with_filter(filter),
            )
            .init(),
    }
}

/// `plugin ...`: tools for adapter authors. `plugin test` exits 0 when every fixture passed, 1
/// when one failed, and 2 when the fixtures or the adapter cannot be loaded; `plugin run` serves
/// until Ctrl-C or SIGTERM, and exits 1 with one `error:` line when it cannot start.
fn plugin(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::Test {
            adapter,
            fixtures,
            cache_dir,
            update,
        } => {
            let options = dolphin_bridge::plugin_test::Options {
                adapter,
                fixtures,
                cache_dir,
                update,
            };
            let runtime = tokio::runtime::Runtime::new()?;
            let mut stdout = std::io::stdout();
            let result = runtime.block_on(dolphin_bridge::plugin_test::run(&options, &mut stdout));
            stdout.flush()?;
            let code = match result {
                Ok(true) => 0,
                Ok(false) => 1,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    2
                }
            };
            std::process::exit(code)
        }
        PluginCommand::Run {
            adapter,
            fixtures,
            vendor,
            listen,
        } => {
            let options = dolphin_bridge::plugin_run::Options {
                adapter,
                fixtures,
                vendor,
                listen,
            };
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let shutdown = CancellationToken::new();
                tokio::spawn(stop_on_signal(shutdown.clone()));
                dolphin_bridge::plugin_run::run(&options, shutdown).await
            })
        }
        PluginCommand::New { lang, name, dir, sdk } => {
            let options = dolphin_bridge::plugin_new::Options {
                language: lang,
                name,
                dir,
                sdk,
            };
            match dolphin_bridge::plugin_new::create(&options) {
                Ok(created) => {
                    print!("{}", new_project_summary(&created));
                    Ok(())
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    std::process::exit(2)
                }
            }
        }
    }
}

/// What `plugin new` prints: the files it wrote, then how to build and test the adapter, as
/// commands that work where it was run (the build in a subshell that leaves the user there, the
/// test with the bridge as it was invoked and the project's paths).
fn new_project_summary(created: &dolphin_bridge::plugin_new::Created) -> String {
    let dir = created.dir.display();
    let mut out = format!("wrote {dir}:\n");
    for file in &created.files {
        out.push_str(&format!("  {}\n", file.display()));
    }
    let program = std::env::args().next().unwrap_or_else(|| "dolphin-bridge".into());
    out.push_str(&format!(
        "build it:  (cd {dir} && {})\ntest it:   {}\n",
        created.build,
        created.test_command_from_here(&program)
    ));
    out
}

/// `deploy`, `versions`, `rollback`: exits 1 with the bridge's reason when it refuses.
fn remote_deploy(tenant: &str, action: Action, remote: RemoteArgs) -> anyhow::Result<()> {
    let remote = Remote {
        url: remote.url,
        token: remote.token,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let mut stdout = std::io::stdout();
    let result = runtime.block_on(dolphin_bridge::deploy_client::run(&remote, tenant, action, &mut stdout));
    stdout.flush()?;
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}

async fn check(config: Config) -> anyhow::Result<()> {
    let registry = dolphin_bridge::build_registry(&config, dolphin_bridge::open_store_for_command(&config).await?)?;
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

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.server.listen;
    let bridge = dolphin_bridge::Bridge::start(config).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} ([server] listen)"))?;
    let address = listener.local_addr()?;
    let replica = dolphin_bridge::cluster::ReplicaId::current();
    tracing::info!(%address, %replica, tenants = bridge.registry().snapshot().all().len(), "dolphin-bridge started");
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on http://{address}")?;
    stdout.flush()?;

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    tokio::spawn(reload_on_sighup(bridge.registry().clone()));
    bridge.serve(listener, shutdown).await?;
    tracing::info!("dolphin-bridge stopped");
    Ok(())
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C.
async fn stop_on_signal(shutdown: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    // Cancel first: logging may fail if nobody reads stderr any more.
    shutdown.cancel();
    tracing::info!("shutting down: no new requests; letting running work finish");
}

/// Reloads the configuration and adapters on every SIGHUP.
async fn reload_on_sighup(registry: Arc<AdapterRegistry>) {
    let mut hangup =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).expect("installing the SIGHUP handler");
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading");
        // The outcome is logged by `reload`.
        let _ = registry.reload().await;
    }
}

async fn dead_letters(config: Config, command: DeadLetterCommand) -> anyhow::Result<()> {
    let store = dolphin_bridge::open_store_for_command(&config).await?;
    match command {
        DeadLetterCommand::List { tenant, limit } => {
            let letters = store.dead_letters(tenant.as_deref(), limit).await?;
            // Tickets and errors come from 3Dolphins, vendors and adapters: printed escaped.
            for d in &letters {
                println!(
                    "{}  tenant={} ticket={} direction={:?} attempts={} error={}",
                    escape(&d.delivery_id),
                    escape(&d.tenant),
                    escape(&d.ticket),
                    d.direction,
                    d.attempts,
                    escape(d.last_error.as_deref().unwrap_or("-"))
                );
            }
            println!("{} dead letter(s)", letters.len());
        }
        DeadLetterCommand::Show { delivery_id } => match store.delivery(&delivery_id).await? {
            Some(delivery) => println!("{}", serde_json::to_string_pretty(&delivery)?),
            None => anyhow::bail!("no delivery `{delivery_id}`"),
        },
        DeadLetterCommand::Replay { which, to_tenant } => {
            if let Some(tenant) = &to_tenant
                && !config.tenants.iter().any(|t| &t.name == tenant)
            {
                anyhow::bail!("no tenant named `{tenant}` in {}", config.source.display());
            }
            let replayed = store.replay(which.filter(), to_tenant.as_deref()).await?;
            println!("{replayed} dead letter(s) queued again");
        }
        DeadLetterCommand::Purge {
            which,
            older_than_hours,
        } => {
            let before = dolphin_bridge::clock::now_ms() - (older_than_hours as i64).saturating_mul(3_600_000);
            let purged = store.purge_dead_letters(which.filter(), before).await?;
            println!("{purged} dead letter(s) deleted");
        }
    }
    Ok(())
}
