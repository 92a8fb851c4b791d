//! A throwaway PostgreSQL server for the PostgreSQL store's tests: the distribution's
//! `postgresql` package (installed when missing), a fresh data directory in the system's temp
//! folder, a free port on 127.0.0.1, and a database for the tests; stopped and removed when the
//! [`TestServer`] is dropped, whether the tests passed or not.
//!
//! PostgreSQL refuses to run as root: as root, the server runs as the `postgres` system user
//! the package creates, owning its data directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{postgres_tls, run};

/// The environment variable naming the test database (a `postgres://` URL).
pub const URL_ENV: &str = "DOLPHIN_BRIDGE_TEST_POSTGRES_URL";
/// The nemesis's own server (restarted by the harness, so never the one the other tests share):
/// its database URL, its `pg_ctl`, its data directory, and the system user that must run
/// `pg_ctl` (set only when the server runs as that user).
pub const NEMESIS_URL_ENV: &str = "DOLPHIN_BRIDGE_TEST_NEMESIS_POSTGRES_URL";
pub const NEMESIS_PG_CTL_ENV: &str = "DOLPHIN_BRIDGE_TEST_PG_CTL";
pub const NEMESIS_PGDATA_ENV: &str = "DOLPHIN_BRIDGE_TEST_PGDATA";
pub const NEMESIS_PG_USER_ENV: &str = "DOLPHIN_BRIDGE_TEST_PG_USER";
/// The database created for the tests.
const DATABASE: &str = "dolphin_bridge_test";
/// The system user the server runs as when xtask runs as root.
const SYSTEM_USER: &str = "postgres";
/// Where Debian and Ubuntu put each major version's programs.
const DISTRIBUTION_BINS: &str = "/usr/lib/postgresql";
/// The data folders' name, before the process id of the xtask that made it.
const DATA_PREFIX: &str = "dolphin-bridge-postgres-";

/// Whether the server syncs its commits to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync=off`: for tests, whose data are thrown away.
    Off,
    /// `fsync=on` (PostgreSQL's default): for benchmarks.
    Fsync,
}

/// Whether the server speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    On,
    Off,
}

/// A running test server; stopped and its data removed on drop.
pub struct TestServer {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_system_user: bool,
    /// The authorities of its TLS certificate, when it speaks TLS.
    authorities: Option<postgres_tls::Authorities>,
}

impl TestServer {
    /// Installs PostgreSQL when missing, then initialises and starts a server for tests
    /// (fsync off: throwaway data need no durability), speaking TLS as well as plain TCP with a
    /// certificate of the tests' own authority (see [`TestServer::tls_env`]).
    pub fn start() -> Result<TestServer> {
        Self::start_named(Durability::Off, "", Tls::On)
    }

    /// Like [`TestServer::start`], with fsync as `durability` says (on for benchmarks, whose
    /// commits should cost what they cost in production).
    pub fn start_with(durability: Durability) -> Result<TestServer> {
        Self::start_named(durability, "", Tls::Off)
    }

    /// A server for the nemesis (`cargo xtask nemesis`, and the nemesis test in `cargo xtask
    /// test`): a cluster of its own, since the nemesis restarts it.
    pub fn start_for_nemesis() -> Result<TestServer> {
        Self::start_named(Durability::Off, "-nemesis", Tls::Off)
    }

    /// The environment the nemesis harness reads: the database URL, how to run `pg_ctl` on
    /// this server and where its data are.
    pub fn nemesis_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            (NEMESIS_URL_ENV, self.url()),
            (NEMESIS_PG_CTL_ENV, self.bin.join("pg_ctl").display().to_string()),
            (NEMESIS_PGDATA_ENV, self.data.display().to_string()),
        ];
        if self.as_system_user {
            env.push((NEMESIS_PG_USER_ENV, SYSTEM_USER.to_string()));
        }
        env
    }

    /// The environment naming the authority that signed the server's certificate and one that
    /// did not (empty when the server speaks no TLS).
    pub fn tls_env(&self) -> Vec<(&'static str, String)> {
        match &self.authorities {
            Some(a) => vec![
                (postgres_tls::CA_ENV, a.ca.display().to_string()),
                (postgres_tls::OTHER_CA_ENV, a.other_ca.display().to_string()),
            ],
            None => Vec::new(),
        }
    }

    /// Starts a server whose data folder's name ends with `suffix` (after the process id), so
    /// that one xtask can run several.
    fn start_named(durability: Durability, suffix: &str, tls: Tls) -> Result<TestServer> {
        let bin = ensure_installed()?;
        let as_system_user = is_root();
        if suffix.is_empty() {
            sweep_abandoned(&bin, as_system_user);
        }
        let started = Instant::now();
        // In the system's temp folder, not the target folder: the server runs as the `postgres`
        // user, who must be able to reach it (a checkout under a private home folder is not).
        let data = std::env::temp_dir().join(format!("{DATA_PREFIX}{}{suffix}", std::process::id()));
        if data.exists() {
            std::fs::remove_dir_all(&data).with_context(|| format!("removing {}", data.display()))?;
        }
        std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        if as_system_user {
            run(Command::new("chown")
                .args([&format!("{SYSTEM_USER}:{SYSTEM_USER}")])
                .arg(&data))?;
        }
        let port = free_port()?;
        let mut server = TestServer {
            bin,
            data,
            port,
            as_system_user,
            authorities: None,
        };
        let data = server.data.display().to_string();
        run(server
            .command("initdb")
            .args(["--pgdata", &data, "--username", "postgres", "--auth", "trust"])
            .args(["--encoding", "UTF8", "--no-sync"]))?;
        // The socket goes in the data directory.
        let fsync = match durability {
            Durability::Off => "off",
            Durability::Fsync => "on",
        };
        let mut options =
            format!("-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync={fsync} -c max_connections=300");
        if tls == Tls::On {
            server.authorities = Some(postgres_tls::write(&server.data, &server.data)?);
            if as_system_user {
                for file in [postgres_tls::SERVER_CERT, postgres_tls::SERVER_KEY] {
                    run(Command::new("chown")
                        .arg(format!("{SYSTEM_USER}:{SYSTEM_USER}"))
                        .arg(server.data.join(file)))?;
                }
            }
            options += &format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                postgres_tls::SERVER_CERT,
                postgres_tls::SERVER_KEY
            );
        }
        run(server
            .command("pg_ctl")
            .args(["start", "--wait", "--pgdata", &data, "--options", &options, "--log"])
            .arg(server.data.join("server.log")))?;
        run(server.command("createdb").args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--username",
            "postgres",
            DATABASE,
        ]))?;
        eprintln!(
            "xtask: PostgreSQL test server on port {port} (fsync={fsync}): initdb + start + createdb {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(server)
    }

    /// The test database's URL, for [`URL_ENV`].
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// One of the server's programs, run as the system user when we are root.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_system_user {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", SYSTEM_USER, "--"]).arg(program);
            // The system user may not be able to enter the current directory.
            cmd.current_dir(&self.data);
            cmd
        } else {
            Command::new(program)
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        if let Err(e) = run(self
            .command("pg_ctl")
            .args(["stop", "--wait", "--mode", "immediate", "--pgdata", &data]))
        {
            eprintln!("xtask: stopping the PostgreSQL test server: {e:#}");
        }
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// The folder holding `initdb` and `pg_ctl`: on the PATH, else the newest of the distribution's
/// versions; installs the distribution's `postgresql` package when there is none.
fn ensure_installed() -> Result<PathBuf> {
    if let Some(bin) = find_bin() {
        return Ok(bin);
    }
    eprintln!("xtask: PostgreSQL is missing; installing the distribution's package");
    let started = Instant::now();
    crate::apt::install("postgresql", "the PostgreSQL store's tests need a PostgreSQL server")?;
    eprintln!(
        "xtask: PostgreSQL installed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    match find_bin() {
        Some(bin) => Ok(bin),
        None => bail!("PostgreSQL was installed but neither initdb nor pg_ctl is found"),
    }
}

/// Stops and removes the servers of earlier runs whose xtask is gone (killed before it could
/// stop its server).
fn sweep_abandoned(bin: &Path, as_system_user: bool) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        // `{pid}` or `{pid}-{suffix}`.
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DATA_PREFIX))
            .map(|rest| rest.split_once('-').map_or(rest, |(pid, _)| pid))
        else {
            continue;
        };
        if pid.parse::<u32>().is_err() || Path::new("/proc").join(pid).exists() {
            continue;
        }
        let abandoned = TestServer {
            bin: bin.to_path_buf(),
            data: entry.path(),
            port: 0,
            as_system_user,
            authorities: None,
        };
        eprintln!("xtask: stopping the PostgreSQL test server left by process {pid}");
        // Dropping it stops the server (if it still runs) and removes its folder.
        drop(abandoned);
    }
}

fn find_bin() -> Option<PathBuf> {
    let has_tools = |dir: &Path| ["initdb", "pg_ctl", "createdb"].iter().all(|p| dir.join(p).is_file());
    // Debian links `postgres` and friends into the PATH but not `initdb`, often: prefer the
    // folder a found program really lives in.
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|path| {
        std::env::split_paths(&path)
            .filter_map(|dir| std::fs::canonicalize(dir.join("initdb")).ok())
            .filter_map(|initdb| initdb.parent().map(Path::to_path_buf))
            .collect::<Vec<_>>()
    });
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(DISTRIBUTION_BINS)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    on_path
        .chain(versions.into_iter().rev().map(|(_, bin)| bin))
        .find(|dir| has_tools(dir))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A TCP port nothing listens on now.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
