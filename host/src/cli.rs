//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// dolphin-bridge: connects 3Dolphins to omnichannel vendors through WebAssembly adapters.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// The configuration file.
    #[arg(
        long,
        short,
        global = true,
        env = "DOLPHIN_BRIDGE_CONFIG",
        default_value = "dolphin-bridge.toml"
    )]
    pub config: PathBuf,
    /// How log lines on stderr are written: `text` for people, `json` (one object a line) for
    /// log collectors; in JSON no adapter text can pass for a line of its own.
    #[arg(long, global = true, env = "DOLPHIN_BRIDGE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bridge.
    Serve,
    /// Validate the configuration and compile every adapter, then exit.
    Check,
    /// Print the properties a 3Dolphins administrator sets to reach this bridge.
    Properties,
    /// List, inspect and replay dead letters.
    DeadLetters {
        #[command(subcommand)]
        command: DeadLetterCommand,
    },
    /// Tools for writing adapters; they need no configuration file.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Upload a new version of a tenant's adapter to a running bridge, which validates and
    /// activates it; exits 1 when it is rejected (the reason is printed). Needs no configuration
    /// file.
    Deploy {
        /// The tenant.
        #[arg(long, short)]
        tenant: String,
        /// The adapter component (`.wasm`).
        file: PathBuf,
        /// Deploy it as a canary serving this percent of the tenant's tickets (1 to 99), chosen
        /// per ticket, beside the active version; it is then promoted, aborted or rolled back
        /// on its own (`canary`).
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=99))]
        canary: Option<u8>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// List a tenant's adapter versions on a running bridge, newest first (`*`: active).
    Versions {
        /// The tenant.
        #[arg(long, short)]
        tenant: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Return a tenant's adapter to its previous version on a running bridge.
    Rollback {
        /// The tenant.
        #[arg(long, short)]
        tenant: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Show, promote or abort a tenant's canary on a running bridge.
    Canary {
        #[arg(value_enum)]
        action: CanaryAction,
        /// The tenant.
        #[arg(long, short)]
        tenant: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

/// What `canary` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CanaryAction {
    /// Both versions' calls, failures and latency since the canary started, and the last
    /// canary's outcome.
    Status,
    /// Make the canary the active version for every ticket.
    Promote,
    /// Stop the canary: the active version serves every ticket again.
    Abort,
}

/// Which running bridge `deploy`, `versions` and `rollback` talk to, and with which token.
#[derive(Debug, clap::Args)]
pub struct RemoteArgs {
    /// The bridge's base URL.
    #[arg(long, env = "DOLPHIN_BRIDGE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The admin token or the tenant's deploy token (`[tenants.deploy] token`).
    #[arg(long, env = "DOLPHIN_BRIDGE_DEPLOY_TOKEN", hide_env_values = true)]
    pub token: String,
}

/// `plugin` sub-commands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Run an adapter against recorded Incoming events and vendor webhooks with a recording fake
    /// vendor, and print what it would send to the vendor and to 3Dolphins. Exits 0 when every
    /// fixture passed, 1 when one failed, 2 when the fixtures or the adapter cannot be loaded.
    Test {
        /// The adapter component (`.wasm`).
        adapter: PathBuf,
        /// The fixture folder: `tenant.toml`, `vendor.json`, `incoming/*.json`, `webhooks/*.json`
        /// and each fixture's `NAME.expect.json`.
        #[arg(long)]
        fixtures: PathBuf,
        /// Where compiled adapters are cached (default: a folder of the user's in the system
        /// temp folder), so that a run after the first compiles only a changed adapter.
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Write each fixture's `NAME.expect.json` from what it produced (its golden file)
        /// instead of comparing with it.
        #[arg(long)]
        update: bool,
    },
    /// Run the bridge locally on an adapter: the tenant from a fixture folder (as `plugin
    /// test` reads it), a fake 3Dolphins and a fake vendor on 127.0.0.1 that print what they
    /// receive, the adapter reloaded whenever its file changes, and ready-to-paste `curl` lines
    /// for the Incoming and webhook endpoints. Ctrl-C stops it and removes its temporary folder.
    Run {
        /// The adapter component (`.wasm`).
        adapter: PathBuf,
        /// The fixture folder: `tenant.toml` (owner, config, secrets), `vendor.json` (the fake
        /// vendor's answers), and the first of `incoming/*.json` and of `webhooks/*.json` for the
        /// sample requests.
        #[arg(long)]
        fixtures: PathBuf,
        /// A real vendor's base URL: what `${VENDOR_URL}` stands for and the adapter's one
        /// allowed origin, instead of the fake vendor.
        #[arg(long)]
        vendor: Option<String>,
        /// Where the bridge listens (port 0: a free one; the address is printed).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
    /// Write a new adapter project from a template: an adapter posting each customer message to
    /// a vendor URL and mapping the vendor's webhook into 3Dolphins events, fixtures that
    /// `plugin test` passes, a tenant snippet, a README and a one-command build. Exits 2 when
    /// nothing was written (a bad name, a folder that is not empty, no SDK for Rust).
    New {
        /// The adapter's language.
        #[arg(long, value_enum)]
        lang: crate::plugin_new::Language,
        /// The adapter's name: lowercase letters, digits and `-`, starting with a letter.
        name: String,
        /// The project folder (default `./NAME`); it must not exist, or be an empty folder of the
        /// user's that is not a symbolic link.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// A `plugin-sdk` folder of a dolphin-bridge checkout to take the SDK from: for Rust the
        /// crate the project depends on (by default that of the workspace this binary was built
        /// from, never one found near the project folder); for Python and JavaScript the SDK file
        /// copied into the project (by default the one built into this binary).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

/// `dead-letters` sub-commands; they work on the store file directly, so they also work while
/// the bridge runs (it picks replays up within a second).
#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// List dead letters, oldest first.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show one delivery (any state) as JSON.
    Show { delivery_id: String },
    /// Make dead letters pending again: one by id, a tenant's, or all. Attempt numbers go on
    /// counting; the retry schedule starts again.
    Replay {
        #[command(flatten)]
        which: DeadLetterSelection,
        /// Move them to this configured tenant first (a tenant removed or re-routed by a reload).
        #[arg(long)]
        to_tenant: Option<String>,
    },
    /// Delete dead letters for good: one by id, a tenant's, or all.
    Purge {
        #[command(flatten)]
        which: DeadLetterSelection,
        /// Only those that died longer ago than this many hours.
        #[arg(long, default_value_t = 0)]
        older_than_hours: u64,
    },
}

/// Which dead letters a command acts on.
#[derive(Debug, clap::Args)]
pub struct DeadLetterSelection {
    #[arg(conflicts_with_all = ["tenant", "all"], required_unless_present_any = ["tenant", "all"])]
    pub delivery_id: Option<String>,
    #[arg(long, conflicts_with = "all")]
    pub tenant: Option<String>,
    #[arg(long)]
    pub all: bool,
}

impl DeadLetterSelection {
    /// The store's filter for this selection.
    pub fn filter(self) -> crate::store::DeadLetterFilter {
        use crate::store::DeadLetterFilter;
        match (self.delivery_id, self.tenant, self.all) {
            (Some(id), _, _) => DeadLetterFilter::One(id),
            (None, Some(tenant), _) => DeadLetterFilter::Tenant(tenant),
            _ => DeadLetterFilter::All,
        }
    }
}
