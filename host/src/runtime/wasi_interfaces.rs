//! The WASI interfaces adapters get: a reviewed allowlist linked to wasmtime-wasi's real
//! implementations, and for every other WASI interface a component imports (the toolchains of
//! Python and JavaScript import sockets they never call), functions that trap naming the
//! interface, so the component still loads but cannot reach the host's implementation.

use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasData, Linker, ResourceTable, ResourceType};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
use wasmtime_wasi::random::{WasiRandom, WasiRandomView as _};

use super::CallState;

/// The WASI interfaces linked to real implementations, without their versions (a component's
/// `@0.2.x` import is served by wasmtime-wasi's semver-compatible one). Anything else, sockets
/// and name look-ups (`wasi:sockets/*`: adapters reach the network through `http.send` only)
/// included, traps when called.
pub const LINKED: &[&str] = &[
    // Streams are what stdout and stderr write to; poll waits on them and on clocks; error is
    // their error resource. Their handles count against `limits.resource_handles`.
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    // The time of day and durations: Rust's `SystemTime`/`Instant`, Python's `time`, JavaScript's
    // `Date` and timers.
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    // Hash seeds and random numbers: Rust's `HashMap`, Python's `hash` randomization,
    // JavaScript's `Math.random` and `crypto.getRandomValues`.
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    // What every language's start-up code asks for: arguments and environment (empty), exit,
    // standard streams (stdin empty; stdout and stderr discarded) and whether they are terminals
    // (they are not).
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    // Python formats a traceback by looking for its source files, and wasi-libc first asks for
    // the preopened directories: the bridge preopens none, so there is no directory to open a
    // file in and every path is "not found" (as a trap, the traceback would be lost).
    "wasi:filesystem/preopens",
    "wasi:filesystem/types",
    // Standard HTTP clients (`fetch()` in JavaScript, wasi:http clients in Rust): every request
    // goes through the tenant's egress policy and the call's budget, as `http.send`'s do (see
    // `outgoing_http`).
    "wasi:http/types",
    "wasi:http/outgoing-handler",
];

/// Links the interfaces of [`LINKED`] to wasmtime-wasi, as `wasmtime_wasi::p2::add_to_linker_async`
/// links them (and it alone).
pub(super) fn add_to_linker(linker: &mut Linker<CallState>) -> anyhow::Result<()> {
    add(linker).map_err(anyhow::Error::from)
}

/// The resource table WASI's `io` interfaces keep their handles in.
struct IoTable;

impl HasData for IoTable {
    type Data<'a> = &'a mut ResourceTable;
}

fn add(l: &mut Linker<CallState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::p2::bindings::io;
    type T = CallState;
    io::error::add_to_linker::<T, IoTable>(l, |t| t.ctx().table)?;
    io::poll::add_to_linker::<T, IoTable>(l, |t| t.ctx().table)?;
    io::streams::add_to_linker::<T, IoTable>(l, |t| t.ctx().table)?;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    random::random::add_to_linker::<T, WasiRandom>(l, T::random)?;
    random::insecure::add_to_linker::<T, WasiRandom>(l, T::random)?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, T::random)?;
    cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    filesystem::preopens::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    filesystem::types::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(l)?;
    Ok(())
}

/// The interface `import` names without its version: `wasi:io/poll` for `wasi:io/poll@0.2.6`.
fn unversioned(import: &str) -> &str {
    import.split_once('@').map_or(import, |(name, _)| name)
}

/// Whether the import `name` is a WASI interface [`LINKED`] leaves out.
fn is_unlinked_wasi(name: &str) -> bool {
    name.starts_with("wasi:") && !LINKED.contains(&unversioned(name))
}

/// `linker` for `component`: itself when the component imports no WASI interface outside
/// [`LINKED`], else a copy where each such interface's functions trap with an error naming the
/// function and its interface, and the resources it defines are types no function of the
/// bridge makes.
pub(super) fn linker_for(
    engine: &Engine,
    linker: &Arc<Linker<CallState>>,
    component: &Component,
) -> wasmtime::Result<Arc<Linker<CallState>>> {
    let ty = component.component_type();
    if !ty.imports(engine).any(|(name, _)| is_unlinked_wasi(name)) {
        return Ok(linker.clone());
    }
    let mut linker = Linker::clone(linker);
    // Resources already imported, in the order the component imports them: an interface's
    // resource that is one of these (`use wasi:io/poll.{pollable}`) is the earlier import's,
    // and is not defined again.
    let mut seen: Vec<ResourceType> = Vec::new();
    for (interface, import) in ty.imports(engine) {
        let ComponentItem::ComponentInstance(instance) = import.ty else {
            continue;
        };
        let unlinked = is_unlinked_wasi(interface);
        for (name, export) in instance.exports(engine) {
            match export.ty {
                ComponentItem::Resource(resource) if !seen.contains(&resource) => {
                    seen.push(resource);
                    if unlinked {
                        linker
                            .instance(interface)?
                            .resource(name, ResourceType::host::<Unlinked>(), |_, _| Ok(()))?;
                    }
                }
                ComponentItem::ComponentFunc(_) if unlinked => {
                    let message = format!(
                        "`{interface}#{name}` is not available to adapters: the bridge does not link `{}` \
                         (adapters have no sockets; they reach vendors through `http.send` or wasi:http)",
                        unversioned(interface)
                    );
                    linker
                        .instance(interface)?
                        .func_new(name, move |_, _, _, _| Err(wasmtime::Error::msg(message.clone())))?;
                }
                _ => {}
            }
        }
    }
    Ok(Arc::new(linker))
}

/// The host type behind the resources of interfaces the bridge does not link: no value of it
/// is ever made.
struct Unlinked;
