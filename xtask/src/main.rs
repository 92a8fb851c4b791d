//! `cargo xtask`: the project's chores, in Rust so they run wherever cargo does.
//!
//! - `build-plugins`: every adapter under `plugins/` -> `target/wasm32-wasip2/adapter/NAME.wasm`
//!   (also the test-only ones: `echo-v1`/`echo-v2`, echo with a build tag, `wasi-command`,
//!   a component of another world, and the components written in the WebAssembly text format
//!   under `hostile-wat`, each `X.wat` -> `hostile_wat_X.wasm`)
//! - `test`: build the adapters and the bridge, start a throwaway PostgreSQL server, then run every
//!   test (extra args: `cargo test ARGS`)
//! - `demo`: the bridge between a mock 3Dolphins and a mock Chatwoot, with a scripted round trip
//! - `ci`: what to check before a commit: formatting, clippy (native crates and adapters), tests
//! - `tidy`: the structure's rules: the host's layers, file sizes, Markdown links (`tidy.rs`)
//! - `screenshot`: regenerate the status page's screenshot in docs/ with the browser test
//! - `bench`: `cargo bench -p dolphin-bridge`, then every `tests/src/bin/*-bench.rs`, printing their figures
//!   and, at the end, each figure's ratio to its target
//! - `nemesis`: the end-to-end nemesis test (faults against replicas on PostgreSQL) for as long
//!   as asked, with a seed, printing the checker's table (`nemesis.rs`)
//! - `abuse`: the end-to-end abuse test (one partner attacking the bridge while a healthy
//!   tenant is served) for as long as asked, printing its figures (`abuse.rs`)

mod abuse;
mod apt;
mod bench;
mod browser;
mod doc_links;
mod nemesis;
mod postgres;
mod postgres_tls;
mod prometheus_rules;
mod tidy;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

/// The target every adapter is built for.
const WASM_TARGET: &str = "wasm32-wasip2";
/// The cargo profile adapters are built with (see the root Cargo.toml).
const ADAPTER_PROFILE: &str = "adapter";
/// The bridge's package (and binary) name.
const BRIDGE_PACKAGE: &str = "dolphin-bridge";
const TESTS_PACKAGE: &str = "dolphin-bridge-tests";
const SDK_PACKAGE: &str = "dolphin-bridge-sdk";

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "dolphin-bridge project chores"
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build every adapter under plugins/ for wasm32-wasip2 (installs the target when missing).
    BuildPlugins {
        /// Build only these plugins (folder or package names); default: all.
        #[arg(long = "plugin", value_name = "NAME")]
        only: Vec<String>,
    },
    /// Build the adapters and the bridge, install Chromium and the browser test's packages when
    /// missing, run the SDK's and adapters' unit tests, start a throwaway PostgreSQL server
    /// (installing it when missing), then `cargo test` (host, xtask, end-to-end). With ARGS, only `cargo test ARGS`
    /// (e.g. `cargo xtask test -p dolphin-bridge-tests --test e2e -- refused`).
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
        args: Vec<OsString>,
    },
    /// Run the bridge between a mock 3Dolphins and a mock Chatwoot and show a round trip;
    /// ARGS go to the demo program (try `cargo xtask demo --help`). Stops on Ctrl-C.
    Demo {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
        args: Vec<OsString>,
    },
    /// Regenerate docs/status-page.png: the status page as the browser test sees it after logging in.
    Screenshot,
    /// Formatting check, clippy with warnings denied (native crates and adapters), then `test`.
    Ci,
    /// Check the project's structure: the host's layers (imports only go down, no rings), no
    /// host file over 800 lines of non-test code, every relative link in the Markdown files.
    /// Also run by `cargo test`.
    Tidy,
    /// Build the adapters and a release bridge, run `cargo bench -p dolphin-bridge`, then every
    /// bench binary of the end-to-end crate (`tests/src/bin/*-bench.rs`) against that bridge,
    /// printing their figures, then every figure's ratio to its target (their `target:` lines).
    /// `replica-bench` gets a throwaway PostgreSQL server, with fsync on.
    Bench {
        /// Run only these bench binaries (e.g. `reload-bench`), and not `cargo bench`.
        #[arg(long = "only", value_name = "NAME")]
        only: Vec<String>,
        /// Options for the one bench binary `--only` names (after `--`, e.g.
        /// `cargo xtask bench --only replica-bench -- --tenants 8`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build the adapters and the bridge, start a throwaway PostgreSQL server of its own, then run
    /// the nemesis test (pauses, kills, partitions, database restarts, clock offsets against three
    /// replicas) for MINUTES with SEED, printing the checker's table; fails on a failed verdict.
    Nemesis {
        /// How long the faults go on (the drain and the check come after).
        #[arg(long, default_value_t = 30)]
        minutes: u64,
        /// The schedule's seed (decimal or 0x hex); a rerun with it injects the same faults.
        #[arg(long)]
        seed: Option<String>,
    },
    /// Build the echo, hostile and wasi-command adapters and the bridge, then run the abuse test
    /// (one partner, with its deploy token, webhooks and adapter, attacking the bridge while a
    /// healthy tenant is served) with its attacks running SECONDS in all, printing its figures;
    /// fails when descriptors, memory or disk use grow past their bounds or the healthy tenant
    /// suffers.
    Abuse {
        /// How long the attacks go on in all (each gets an equal share).
        #[arg(long, default_value_t = 300)]
        seconds: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::BuildPlugins { only } => build_plugins(&only).map(|_| ()),
        Task::Test { args } => test(&args),
        Task::Demo { args } => demo(&args),
        Task::Screenshot => screenshot(),
        Task::Ci => ci(),
        Task::Tidy => tidy::run(&workspace_root()),
        Task::Bench { only, args } => bench::bench(&only, &args),
        Task::Nemesis { minutes, seed } => nemesis::run_nemesis(minutes, seed.as_deref()),
        Task::Abuse { seconds } => abuse::run_abuse(seconds),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Paths and processes

/// The workspace root (the folder holding the root Cargo.toml).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one folder below the workspace root")
        .to_path_buf()
}

/// Cargo's target folder: `$CARGO_TARGET_DIR` when set, else `<workspace>/target`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

/// The cargo that runs us (so `+toolchain` overrides carry through), else `cargo`.
fn cargo_cmd() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root());
    cmd
}

/// Runs `cmd`, echoing it first; an error when it cannot start or exits non-zero.
fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {}", describe(cmd));
    let started = std::time::Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", describe(cmd)))?;
    // Where a CI run spends its time, step by step.
    eprintln!("xtask: {:.1} s: {}", started.elapsed().as_secs_f64(), describe(cmd));
    if !status.success() {
        bail!("{} failed ({status})", describe(cmd));
    }
    Ok(())
}

fn describe(cmd: &Command) -> String {
    let mut text = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(cmd.get_program())
        .to_string_lossy()
        .into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

// ---------------------------------------------------------------------------------------------
// build-plugins

/// One adapter project under `plugins/`.
#[derive(Debug)]
struct Plugin {
    /// Folder under `plugins/`.
    dir: PathBuf,
    kind: PluginKind,
}

#[derive(Debug)]
enum PluginKind {
    /// A cargo package built as a component: a `cdylib` (an adapter), or a binary (a test-only
    /// component of another world, such as `plugins/wasi-command`).
    Rust {
        package: String,
        /// The component's file stem: the library's (`[lib] name`, else the package name with
        /// `-` -> `_`), or for a package without a library its binary's (`[[bin]] name`, else the
        /// package name).
        artifact: String,
    },
    /// Components written in the WebAssembly text format: a folder of `.wat` files (and no
    /// Cargo.toml), each assembled on its own (for what a compiler will not emit, such as a
    /// module with many memories or a shared memory).
    Wat { sources: Vec<PathBuf> },
    /// A plugin in a language this task cannot build yet (what marks it: `pyproject.toml`, ...).
    Other { language: &'static str },
}

impl Plugin {
    fn folder_name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn matches(&self, name: &str) -> bool {
        match &self.kind {
            PluginKind::Rust { package, .. } if package == name => true,
            _ => self.folder_name() == name,
        }
    }
}

/// A built adapter component.
struct Built {
    name: String,
    path: PathBuf,
}

/// Every plugin folder under `plugins/`, sorted by folder name.
fn discover_plugins() -> Result<Vec<Plugin>> {
    let plugins_dir = workspace_root().join("plugins");
    let mut plugins = Vec::new();
    if !plugins_dir.is_dir() {
        return Ok(plugins);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&plugins_dir)
        .with_context(|| format!("cannot list {}", plugins_dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let manifest = dir.join("Cargo.toml");
        let kind = if manifest.is_file() {
            rust_plugin_kind(&manifest)?
        } else if let Some(sources) = wat_sources(&dir)? {
            PluginKind::Wat { sources }
        } else if dir.join("pyproject.toml").is_file() || dir.join("app.py").is_file() {
            PluginKind::Other { language: "Python" }
        } else if dir.join("package.json").is_file() {
            PluginKind::Other { language: "JavaScript" }
        } else {
            continue;
        };
        plugins.push(Plugin { dir, kind });
    }
    Ok(plugins)
}

/// The `.wat` files directly in `dir`, sorted; `None` when it holds none.
fn wat_sources(dir: &Path) -> Result<Option<Vec<PathBuf>>> {
    let mut sources: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file() && path.extension().is_some_and(|e| e == "wat"))
        .collect();
    sources.sort();
    Ok((!sources.is_empty()).then_some(sources))
}

/// Reads the package name and the component's file stem from a plugin's Cargo.toml.
fn rust_plugin_kind(manifest: &Path) -> Result<PluginKind> {
    let text = std::fs::read_to_string(manifest).with_context(|| format!("cannot read {}", manifest.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("cannot parse {}", manifest.display()))?;
    let package = table
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .with_context(|| format!("{}: no [package] name", manifest.display()))?
        .to_string();
    let dir = manifest.parent().unwrap_or(Path::new("."));
    let has_lib = table.contains_key("lib") || dir.join("src").join("lib.rs").is_file();
    let first_bin = table
        .get("bin")
        .and_then(|b| b.as_array())
        .and_then(|bins| bins.first())
        .map(|bin| bin.get("name").and_then(|n| n.as_str()).unwrap_or(&package).to_string());
    let artifact = if has_lib {
        table
            .get("lib")
            .and_then(|l| l.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| package.replace('-', "_"))
    } else if let Some(bin) = first_bin {
        bin
    } else if dir.join("src").join("main.rs").is_file() {
        package.clone()
    } else {
        bail!("{}: neither a library nor a binary", manifest.display());
    };
    Ok(PluginKind::Rust { package, artifact })
}

/// Adds the wasm target through rustup when the toolchain lacks it.
fn ensure_wasm_target() -> Result<()> {
    let output = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(workspace_root())
        .output();
    match output {
        Ok(out) if out.status.success() => {
            let installed = String::from_utf8_lossy(&out.stdout);
            if installed.lines().any(|line| line.trim() == WASM_TARGET) {
                return Ok(());
            }
            eprintln!("xtask: the {WASM_TARGET} target is missing; adding it");
            run(Command::new("rustup")
                .args(["target", "add", WASM_TARGET])
                .current_dir(workspace_root()))
        }
        Ok(out) => bail!(
            "`rustup target list --installed` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("xtask: rustup not found; assuming the toolchain already has the {WASM_TARGET} target");
            Ok(())
        }
        Err(err) => Err(err).context("cannot run rustup"),
    }
}

/// Builds the selected plugins (all when `only` is empty) and prints where they are.
fn build_plugins(only: &[String]) -> Result<Vec<Built>> {
    let mut plugins = discover_plugins()?;
    if !only.is_empty() {
        for name in only {
            if !plugins.iter().any(|p| p.matches(name)) {
                bail!("no plugin named {name:?} under plugins/");
            }
        }
        plugins.retain(|p| only.iter().any(|name| p.matches(name)));
    }
    if plugins.is_empty() {
        eprintln!("xtask: no plugins under plugins/");
        return Ok(Vec::new());
    }

    let mut built = Vec::new();

    // Rust adapters: one cargo invocation for all of them, so cargo schedules the whole build.
    let rust: Vec<(&str, &str)> = plugins
        .iter()
        .filter_map(|p| match &p.kind {
            PluginKind::Rust { package, artifact } => Some((package.as_str(), artifact.as_str())),
            PluginKind::Wat { .. } | PluginKind::Other { .. } => None,
        })
        .collect();
    if !rust.is_empty() {
        ensure_wasm_target()?;
        let mut cmd = cargo_cmd();
        cmd.args(["build", "--target", WASM_TARGET, "--profile", ADAPTER_PROFILE]);
        for (package, _) in &rust {
            cmd.args(["--package", package]);
        }
        run(&mut cmd)?;
        let out_dir = target_dir().join(WASM_TARGET).join(ADAPTER_PROFILE);
        for (package, artifact) in &rust {
            built.push(Built {
                name: package.to_string(),
                path: out_dir.join(format!("{artifact}.wasm")),
            });
        }
    }

    built.extend(assemble_wat_plugins(&plugins)?);
    // Adapters in other languages hook in here: each kind gets a builder that writes its
    // component beside the Rust ones and pushes it onto `built`.
    built.extend(build_other_plugins(&plugins)?);

    println!("adapters:");
    for component in &built {
        let size = std::fs::metadata(&component.path)
            .with_context(|| format!("{} was not produced", component.path.display()))?
            .len();
        let shown = component.path.strip_prefix(workspace_root()).unwrap_or(&component.path);
        println!(
            "  {:<24} {}  ({:.1} KiB)",
            component.name,
            shown.display(),
            size as f64 / 1024.0
        );
    }
    Ok(built)
}

/// Assembles every `.wat` file of the WebAssembly-text plugins into a binary component:
/// `plugins/FOLDER/NAME.wat` -> `FOLDER_NAME.wasm` (`-` becomes `_`), rewritten only when the
/// source is newer.
fn assemble_wat_plugins(plugins: &[Plugin]) -> Result<Vec<Built>> {
    let out_dir = target_dir().join(WASM_TARGET).join(ADAPTER_PROFILE);
    let mut built = Vec::new();
    for plugin in plugins {
        let PluginKind::Wat { sources } = &plugin.kind else {
            continue;
        };
        std::fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
        let folder = plugin.folder_name();
        for source in sources {
            let stem = source
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let out = out_dir.join(format!("{folder}_{stem}.wasm").replace('-', "_"));
            if !is_up_to_date(&out, &[source.as_path()])? {
                // `parse_file` names the file, line and column of a syntax error.
                let bytes = wat::parse_file(source).with_context(|| format!("cannot assemble {}", source.display()))?;
                // Written aside and renamed, so a bridge watching the file never reads half of it.
                let partial = out.with_extension("wasm.partial");
                std::fs::write(&partial, bytes).with_context(|| format!("cannot write {}", partial.display()))?;
                std::fs::rename(&partial, &out).with_context(|| format!("cannot write {}", out.display()))?;
            }
            built.push(Built {
                name: format!("{folder}/{stem}"),
                path: out,
            });
        }
    }
    Ok(built)
}

/// Builders for adapters not written in Rust: Python with componentize-py (installed into a
/// virtual environment under the target folder), JavaScript with componentize-js (installed
/// with npm into the plugin's folder). A component is rebuilt only when its sources or the WIT
/// changed.
fn build_other_plugins(plugins: &[Plugin]) -> Result<Vec<Built>> {
    let out_dir = target_dir().join(WASM_TARGET).join(ADAPTER_PROFILE);
    std::fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let wit = workspace_root().join("wit");
    let mut built = Vec::new();
    for plugin in plugins {
        let PluginKind::Other { language } = plugin.kind else {
            continue;
        };
        let name = plugin.folder_name();
        let out = out_dir.join(format!("{}.wasm", name.replace('-', "_")));
        // The language's SDK is compiled into the component too.
        let sdk = workspace_root().join("plugin-sdk").join(match language {
            "Python" => "python",
            _ => "js",
        });
        if is_up_to_date(&out, &[&plugin.dir, &wit, &sdk])? {
            built.push(Built { name, path: out });
            continue;
        }
        match language {
            "Python" => {
                let componentize_py = python_tool()?;
                run(Command::new(componentize_py)
                    .current_dir(&plugin.dir)
                    .arg("-d")
                    .arg(&wit)
                    .args(["-w", "adapter", "componentize", "app", "-p", ".", "-p"])
                    .arg(workspace_root().join("plugin-sdk").join("python"))
                    .arg("-o")
                    .arg(&out))?;
            }
            "JavaScript" => {
                if !npm_dependencies_installed(&plugin.dir)? {
                    run(Command::new("npm").current_dir(&plugin.dir).args([
                        "install",
                        "--no-audit",
                        "--no-fund",
                        "--no-package-lock",
                        "--loglevel=error",
                    ]))
                    .context("installing componentize-js (needs node and npm)")?;
                }
                run(Command::new("node")
                    .current_dir(&plugin.dir)
                    .arg("build.mjs")
                    .arg(&wit)
                    .arg(&out))?;
            }
            other => bail!("plugins/{name}: cannot build {other} adapters"),
        }
        built.push(Built { name, path: out });
    }
    Ok(built)
}

/// Whether every dependency `package.json` in `dir` lists is in its `node_modules` (a checkout
/// made before a dependency was added gets it at the next build).
fn npm_dependencies_installed(dir: &Path) -> Result<bool> {
    let manifest = dir.join("package.json");
    let text = std::fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let package: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", manifest.display()))?;
    let names = ["dependencies", "devDependencies"]
        .iter()
        .filter_map(|section| package[*section].as_object())
        .flat_map(|deps| deps.keys().cloned())
        .collect::<Vec<_>>();
    Ok(names
        .iter()
        .all(|name| dir.join("node_modules").join(name).join("package.json").is_file()))
}

/// The componentize-py version Python adapters are built with.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// The mypy version a `plugin new` Python project's build type-checks with (its tests run it).
const MYPY: &str = "mypy==1.13.0";

/// `componentize-py` from a virtual environment under the target folder, created on first use,
/// with mypy beside it.
fn python_tool() -> Result<PathBuf> {
    let venv = target_dir().join("adapter-tools").join("python");
    let tool = venv.join("bin").join("componentize-py");
    if !tool.is_file() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
            .context("creating a Python virtual environment (needs python3 with venv)")?;
        run(Command::new(venv.join("bin").join("pip")).args(["install", "--quiet", COMPONENTIZE_PY]))
            .context("installing componentize-py")?;
    }
    if !venv.join("bin").join("mypy").is_file() {
        run(Command::new(venv.join("bin").join("pip")).args(["install", "--quiet", MYPY]))
            .context("installing mypy")?;
    }
    Ok(tool)
}

/// Whether `out` exists and is newer than every file under `inputs` (node_modules excluded).
fn is_up_to_date(out: &Path, inputs: &[&Path]) -> Result<bool> {
    let Ok(built) = std::fs::metadata(out).and_then(|m| m.modified()) else {
        return Ok(false);
    };
    fn newest(path: &Path) -> std::io::Result<std::time::SystemTime> {
        let meta = std::fs::metadata(path)?;
        let mut latest = meta.modified()?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(path)? {
                let entry = entry?;
                if matches!(entry.file_name().to_str(), Some("node_modules" | "__pycache__")) {
                    continue;
                }
                latest = latest.max(newest(&entry.path())?);
            }
        }
        Ok(latest)
    }
    for input in inputs {
        if newest(input)? > built {
            return Ok(false);
        }
    }
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// test, demo, ci

fn bridge_binary() -> PathBuf {
    target_dir()
        .join("debug")
        .join(format!("{BRIDGE_PACKAGE}{}", std::env::consts::EXE_SUFFIX))
}

fn test(args: &[OsString]) -> Result<()> {
    let plugins = discover_plugins()?;
    build_plugins(&[])?;
    let chromium = browser::setup()?;
    if args.is_empty() {
        prometheus_rules::check()?;
    }
    // The end-to-end tests run the real binary; `cargo test` alone does not build another
    // package's binary. For the whole suite it is built by `cargo test --no-run`, with the
    // features the tests unify: a plain `cargo build` would resolve some dependencies' features
    // differently and compile them (and the bridge) a second time.
    if args.is_empty() {
        run(cargo_cmd().args(["test", "--no-run"]))?;
    } else {
        run(cargo_cmd().args(["build", "--package", BRIDGE_PACKAGE]))?;
    }
    if args.is_empty() {
        // The SDK's and the adapters' unit tests, natively. A separate invocation: testing them
        // with the default members would unify features differently and build the host's
        // dependencies (wasmtime) a second time.
        let mut cmd = cargo_cmd();
        cmd.args(["test", "--package", SDK_PACKAGE]);
        for plugin in &plugins {
            if let PluginKind::Rust { package, .. } = &plugin.kind {
                cmd.args(["--package", package]);
            }
        }
        run(&mut cmd)?;
    }
    // The PostgreSQL store's tests run against a real server, stopped when this returns; the
    // nemesis test restarts a server of its own.
    let postgres = postgres::TestServer::start()?;
    let nemesis_postgres = postgres::TestServer::start_for_nemesis()?;
    let test_cmd = || {
        let mut cmd = cargo_cmd();
        cmd.envs(nemesis_postgres.nemesis_env())
            .arg("test")
            .env("DOLPHIN_BRIDGE_BIN", bridge_binary())
            .env(browser::CHROMIUM_ENV, &chromium)
            .env(postgres::URL_ENV, postgres.url())
            .envs(postgres.tls_env());
        cmd
    };
    if !args.is_empty() {
        return run(test_cmd().args(args));
    }
    // Every test binary runs, so one failure does not hide the others; the tests that compare
    // latencies run afterwards, each alone.
    let mut suite = test_cmd();
    suite.args(["--no-fail-fast", "--"]);
    for name in RUN_ALONE {
        suite.args(["--skip", name]);
    }
    let suite = run(&mut suite);
    let mut alone = Ok(());
    for name in RUN_ALONE {
        // The suite's packages (no `--package`): the same features, so nothing is built again.
        let result = run(test_cmd()
            .args(["--test", "e2e", "--"])
            .args(["--exact", name, "--test-threads", "1"]));
        alone = alone.and(result);
    }
    suite.and(alone)
}

/// End-to-end tests that compare one tenant's latency during an attack with its latency before
/// and after: run beside the rest of the suite, they would charge the other tests' load (cargo
/// builds, compilations, browsers) to the attack.
const RUN_ALONE: &[&str] = &[abuse::TEST];

/// Runs the browser test with its screenshot going to `docs/status-page.png`.
fn screenshot() -> Result<()> {
    build_plugins(&["echo-v1".into(), "echo-v2".into()])?;
    run(cargo_cmd().args(["build", "--package", BRIDGE_PACKAGE]))?;
    let chromium = browser::setup()?;
    run(cargo_cmd()
        .args(["test", "--package", TESTS_PACKAGE, "--test", "e2e", "--", "browser::"])
        .env("DOLPHIN_BRIDGE_BIN", bridge_binary())
        .env(browser::CHROMIUM_ENV, chromium)
        .env(browser::SCREENSHOT_ENV, browser::SCREENSHOT))?;
    eprintln!("xtask: wrote {}", workspace_root().join(browser::SCREENSHOT).display());
    Ok(())
}

fn demo(args: &[OsString]) -> Result<()> {
    build_plugins(&[])?;
    run(cargo_cmd().args([
        "build",
        "--package",
        BRIDGE_PACKAGE,
        "--package",
        TESTS_PACKAGE,
        "--bin",
        BRIDGE_PACKAGE,
        "--bin",
        "demo",
    ]))?;
    let demo_bin = target_dir()
        .join("debug")
        .join(format!("demo{}", std::env::consts::EXE_SUFFIX));
    let mut cmd = Command::new(&demo_bin);
    cmd.arg("--bridge")
        .arg(bridge_binary())
        .arg("--config")
        .arg(workspace_root().join("examples").join("demo.toml"))
        .args(args)
        .current_dir(workspace_root());
    exec(cmd)
}

/// Hands the terminal over to `cmd` (so Ctrl-C reaches it alone, and its exit code is ours).
#[cfg(unix)]
fn exec(mut cmd: Command) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let err = cmd.exec();
    Err(err).with_context(|| format!("cannot start {}", describe(&cmd)))
}

#[cfg(not(unix))]
fn exec(mut cmd: Command) -> Result<()> {
    run(&mut cmd)
}

fn ci() -> Result<()> {
    run(cargo_cmd().args(["fmt", "--all", "--check"]))?;
    run(cargo_cmd().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    // Adapters are not default members: lint them for the target they are built for.
    let rust_plugins: Vec<String> = discover_plugins()?
        .into_iter()
        .filter_map(|p| match p.kind {
            PluginKind::Rust { package, .. } => Some(package),
            PluginKind::Wat { .. } | PluginKind::Other { .. } => None,
        })
        .collect();
    if !rust_plugins.is_empty() {
        ensure_wasm_target()?;
        let mut cmd = cargo_cmd();
        cmd.args(["clippy", "--target", WASM_TARGET, "--package", "dolphin-bridge-sdk"]);
        for package in &rust_plugins {
            cmd.args(["--package", package]);
        }
        cmd.args(["--", "-D", "warnings"]);
        run(&mut cmd)?;
    }
    test(&[])
}
