//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// dolphin-bridge: connects 3Dolphins to omnichannel vendors through WebAssembly adapters.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// The configuration file.
    #[arg(long, short, global = true, env = "DOLPHIN_BRIDGE_CONFIG", default_value = "dolphin-bridge.toml")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
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
}
