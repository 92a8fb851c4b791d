//! `cargo xtask bench`: `cargo bench -p dolphin-bridge`, then every `tests/src/bin/*-bench.rs`
//! against a release bridge, printing their figures and, at the end, each figure's ratio to its
//! target.

use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{
    BRIDGE_PACKAGE, TESTS_PACKAGE, build_plugins, cargo_cmd, describe, postgres, run, target_dir, workspace_root,
};

/// The bench binary that runs bridges on a PostgreSQL server `bench` starts for it.
const REPLICA_BENCH: &str = "replica-bench";

/// Bench binaries run a second time with these options (after every binary's default run):
/// the isolation bench beside a real build, whose target differs (3x, not 2x).
const SECOND_RUNS: [(&str, &[&str]); 1] = [("isolation-bench", &["--background-build"])];

/// The bench binaries of the end-to-end crate: `tests/src/bin/*-bench.rs`, sorted by name.
fn bench_binaries() -> Result<Vec<String>> {
    let dir = workspace_root().join("tests").join("src").join("bin");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .filter_map(|path| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .filter(|name| name.ends_with("-bench"))
        .collect();
    names.sort();
    Ok(names)
}

/// Writes out what the builds (and earlier benches) left in the page cache, so that the benches'
/// disk syncs do not wait behind it: an `accept-bench` run right after a release build measured
/// its half-load p99 at 110-137 ms, and 13 ms once the build had been written out.
fn settle_disk() {
    match Command::new("sync").status() {
        Ok(status) if status.success() => {}
        Ok(status) => eprintln!("xtask: sync exited with {status}; figures may include the disk's catching up"),
        Err(err) => eprintln!("xtask: cannot run sync ({err}); figures may include the disk's catching up"),
    }
}

pub fn bench(only: &[String], args: &[String]) -> Result<()> {
    if !args.is_empty() && only.len() != 1 {
        bail!("options after `--` go to one bench binary: name it with one --only");
    }
    let mut binaries = bench_binaries()?;
    if !only.is_empty() {
        for name in only {
            if !binaries.contains(name) {
                bail!("no bench binary {name:?} (tests/src/bin/*-bench.rs: {binaries:?})");
            }
        }
        binaries.retain(|name| only.contains(name));
    }
    build_plugins(&[])?;
    // The bench binaries drive the real bridge: a release build, as it would be deployed.
    run(cargo_cmd().args(["build", "--release", "--package", BRIDGE_PACKAGE]))?;
    let bridge = target_dir()
        .join("release")
        .join(format!("{BRIDGE_PACKAGE}{}", std::env::consts::EXE_SUFFIX));
    let mut targets = Vec::new();
    let mut failed = Vec::new();
    if only.is_empty() {
        settle_disk();
        run_gathering_targets(cargo_cmd().args(["bench", "--package", BRIDGE_PACKAGE]), &mut targets)?;
    }
    if !binaries.is_empty() {
        // Release too: some drivers serve the baseline themselves (raw hyper in `accept-bench`),
        // and hyper's generic code compiled into a dev-profile binary is not optimised.
        let mut cmd = cargo_cmd();
        cmd.args(["build", "--release", "--package", TESTS_PACKAGE]);
        for name in &binaries {
            cmd.args(["--bin", name]);
        }
        run(&mut cmd)?;
    }
    // The replica bench shares one PostgreSQL among its bridges: a throwaway server, with fsync
    // on (unlike the tests') so that a commit costs what it costs in production.
    let postgres = if binaries.iter().any(|name| name == REPLICA_BENCH) {
        Some(postgres::TestServer::start_with(postgres::Durability::Fsync)?)
    } else {
        None
    };
    let mut runs: Vec<(&String, Vec<String>)> = binaries.iter().map(|name| (name, args.to_vec())).collect();
    if args.is_empty() {
        for (name, extra) in SECOND_RUNS {
            if let Some(name) = binaries.iter().find(|n| n.as_str() == name) {
                runs.push((name, extra.iter().map(|a| a.to_string()).collect()));
            }
        }
    }
    for (name, args) in runs {
        let binary = target_dir()
            .join("release")
            .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        let label = format!("{name} {}", args.join(" ")).trim_end().to_string();
        println!("\n==> {label}");
        settle_disk();
        let mut cmd = Command::new(&binary);
        cmd.args(&args)
            .env("DOLPHIN_BRIDGE_BIN", &bridge)
            .current_dir(workspace_root());
        if let Some(server) = postgres.as_ref().filter(|_| *name == REPLICA_BENCH) {
            cmd.env(postgres::URL_ENV, server.url());
        }
        // One failing bench does not hide the others' figures.
        if let Err(err) = run_gathering_targets(&mut cmd, &mut targets) {
            eprintln!("xtask: {err:#}");
            failed.push(label);
        }
    }
    println!("\n==> targets (every figure above that has one, measured in this run)");
    for line in &targets {
        println!("{line}");
    }
    let missed = targets.iter().filter(|line| line.ends_with(": MISSED")).count();
    println!("{} of {} targets met", targets.len() - missed, targets.len());
    if !failed.is_empty() {
        bail!("bench binaries failed: {}", failed.join(", "));
    }
    Ok(())
}

/// Runs `cmd` like [`run`], echoing its output, and keeps the `target: ...` lines it prints
/// (see `tests/src/bench_target.rs`).
fn run_gathering_targets(cmd: &mut Command, targets: &mut Vec<String>) -> Result<()> {
    use std::io::BufRead as _;
    eprintln!("xtask: running {}", describe(cmd));
    let started = std::time::Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", describe(cmd)))?;
    let stdout = child.stdout.take().context("the child's stdout")?;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.with_context(|| format!("reading the output of {}", describe(cmd)))?;
        println!("{line}");
        if line.starts_with("target: ") {
            targets.push(line);
        }
    }
    let status = child.wait().with_context(|| format!("waiting for {}", describe(cmd)))?;
    eprintln!("xtask: {:.1} s: {}", started.elapsed().as_secs_f64(), describe(cmd));
    if !status.success() {
        bail!("{} failed ({status})", describe(cmd));
    }
    Ok(())
}
