//! The nemesis's PostgreSQL server: where it is, how each replica's link to it is spelled, and
//! how to restart it (`pg_ctl restart`).
//!
//! `cargo xtask test` and `cargo xtask nemesis` start a server for the nemesis alone (the
//! nemesis restarts it; the other tests share theirs) and export its URL, its `pg_ctl`, its data
//! directory and, when the server runs as a system user, that user's name. Without them the
//! nemesis runs on the shared test server and injects no database restarts, saying so.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::replica_support::postgres_server_url;

/// The nemesis server's database URL.
pub const NEMESIS_URL_ENV: &str = "DOLPHIN_BRIDGE_TEST_NEMESIS_POSTGRES_URL";
/// Its `pg_ctl`.
pub const PG_CTL_ENV: &str = "DOLPHIN_BRIDGE_TEST_PG_CTL";
/// Its data directory.
pub const PGDATA_ENV: &str = "DOLPHIN_BRIDGE_TEST_PGDATA";
/// The system user `pg_ctl` must run as (`runuser`), when set.
pub const PG_USER_ENV: &str = "DOLPHIN_BRIDGE_TEST_PG_USER";
/// How long a restart may take.
const RESTART_TIMEOUT: Duration = Duration::from_secs(90);

/// How to run `pg_ctl` on the server.
#[derive(Debug, Clone)]
struct Control {
    pg_ctl: PathBuf,
    data: PathBuf,
    user: Option<String>,
}

/// The server the replicas store in.
#[derive(Debug, Clone)]
pub struct Database {
    /// Its URL (`postgres://user@host:port/db`).
    pub url: String,
    /// Its address, which each replica's link forwards to.
    pub addr: SocketAddr,
    control: Result<Control, String>,
}

impl Database {
    /// The nemesis's own server when exported, else the shared test server (no restarts).
    pub fn from_env() -> Database {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (url, control) = match var(NEMESIS_URL_ENV) {
            Some(url) => {
                let control = match (var(PG_CTL_ENV), var(PGDATA_ENV)) {
                    (Some(pg_ctl), Some(data)) => Ok(Control {
                        pg_ctl: pg_ctl.into(),
                        data: data.into(),
                        user: var(PG_USER_ENV),
                    }),
                    _ => Err(format!("{PG_CTL_ENV} and {PGDATA_ENV} are not set")),
                };
                (url, control)
            }
            None => (
                postgres_server_url(),
                Err(format!(
                    "{NEMESIS_URL_ENV} is not set: the server is shared with the other tests, so it is not restarted \
                     (`cargo xtask test` and `cargo xtask nemesis` start one for the nemesis)"
                )),
            ),
        };
        let addr = host_port(&url)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .unwrap_or_else(|| panic!("no address in the PostgreSQL URL {url}"));
        Database { url, addr, control }
    }

    /// Why the server cannot be restarted, when it cannot.
    pub fn cannot_restart(&self) -> Option<&str> {
        self.control.as_ref().err().map(String::as_str)
    }

    /// `url` (on this server) with its host and port replaced by `link`'s.
    pub fn through(&self, url: &str, link: SocketAddr) -> String {
        url.replacen(host_port(&self.url), &link.to_string(), 1)
    }

    /// `pg_ctl restart --wait` with `--mode fast` or `--mode immediate`.
    pub async fn restart(&self, immediate: bool) -> Result<(), String> {
        let control = self.control.as_ref().map_err(Clone::clone)?;
        let mut command = match &control.user {
            Some(user) => {
                let mut command = tokio::process::Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&control.pg_ctl);
                command
            }
            None => tokio::process::Command::new(&control.pg_ctl),
        };
        let mode = if immediate { "immediate" } else { "fast" };
        // The server's output goes to its log, not to a pipe of ours that it would keep open.
        command
            .args(["restart", "--wait", "--mode", mode, "--pgdata"])
            .arg(&control.data)
            .arg("--log")
            .arg(control.data.join("server.log"))
            .current_dir(&control.data)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(RESTART_TIMEOUT, command.output())
            .await
            .map_err(|_| format!("pg_ctl restart -m {mode} took over {RESTART_TIMEOUT:?}"))?
            .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl restart -m {mode} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }
}

/// `host:port` of a `postgres://user@host:port/db?...` URL.
fn host_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_spelled_through_a_link() {
        let database = Database {
            url: "postgres://postgres@127.0.0.1:5433/db".into(),
            addr: "127.0.0.1:5433".parse().unwrap(),
            control: Err(String::new()),
        };
        assert_eq!(host_port(&database.url), "127.0.0.1:5433");
        assert_eq!(
            database.through(
                "postgres://postgres@127.0.0.1:5433/db?options=-c%20search_path%3Dt_1",
                "127.0.0.1:40000".parse().unwrap()
            ),
            "postgres://postgres@127.0.0.1:40000/db?options=-c%20search_path%3Dt_1"
        );
    }
}
