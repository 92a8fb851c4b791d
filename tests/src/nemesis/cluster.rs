//! The replicas under test: each a `dolphin-bridge serve` on files of its own (its config names
//! its own link to the database, its own vendor and 3Dolphins listeners), which the nemesis
//! pauses, kills, restarts (with a clock offset or without) and cuts off from the database.

use std::sync::{Arc, RwLock};

use crate::Bridge;
use crate::crash_support::BridgeFiles;
use crate::nemesis::proxy::{LinkMode, Proxy};
use crate::replica_support::assert_store_is_postgres;

/// The host's variable shifting a process's clock by signed milliseconds.
pub const CLOCK_OFFSET_ENV: &str = "DOLPHIN_BRIDGE_CLOCK_OFFSET_MS";

/// Where the clients find each replica: its base URL, `None` while it is down. A paused
/// replica stays listed, as a load balancer would keep it.
pub type ReplicaUrls = Arc<RwLock<Vec<Option<String>>>>;

/// One replica: its files, its process (none while killed), its link to the database.
pub struct Replica {
    files: BridgeFiles,
    bridge: Option<Bridge>,
    link: Proxy,
    paused: bool,
    offset_ms: i64,
}

/// Every replica, and the URLs the clients read.
pub struct Cluster {
    replicas: Vec<Replica>,
    urls: ReplicaUrls,
}

impl Cluster {
    /// Starts one replica per `(files, link)`, one after another, each checked to run on
    /// PostgreSQL.
    pub async fn start(parts: Vec<(BridgeFiles, Proxy)>) -> Cluster {
        let mut replicas = Vec::with_capacity(parts.len());
        for (files, link) in parts {
            let bridge = files.start().await;
            assert_store_is_postgres(&bridge).await;
            replicas.push(Replica {
                files,
                bridge: Some(bridge),
                link,
                paused: false,
                offset_ms: 0,
            });
        }
        let urls = replicas
            .iter()
            .map(|r| r.bridge.as_ref().map(|b| b.url().to_string()))
            .collect();
        Cluster {
            replicas,
            urls: Arc::new(RwLock::new(urls)),
        }
    }

    /// The URLs the clients pick from.
    pub fn urls(&self) -> ReplicaUrls {
        self.urls.clone()
    }

    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    /// Replica `r`'s process, while it runs.
    pub fn bridge(&self, r: usize) -> Option<&Bridge> {
        self.replicas[r].bridge.as_ref()
    }

    /// SIGSTOP (or SIGCONT, `stop = false`) to replica `r`.
    pub fn pause(&mut self, r: usize, stop: bool) {
        let replica = &mut self.replicas[r];
        let Some(bridge) = &replica.bridge else {
            return;
        };
        let signal = if stop { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: kill(2) on the pid of our own child, which we have not reaped.
        let sent = unsafe { libc::kill(bridge.pid() as libc::pid_t, signal) };
        assert_eq!(
            sent,
            0,
            "signal {signal} to replica {r}: {}",
            std::io::Error::last_os_error()
        );
        replica.paused = stop;
    }

    /// SIGKILLs replica `r` (no restart); its URL is withdrawn.
    pub fn kill(&mut self, r: usize) {
        if let Some(mut bridge) = self.replicas[r].bridge.take() {
            bridge.kill_hard();
        }
        self.replicas[r].paused = false;
        self.urls.write().unwrap()[r] = None;
    }

    /// Starts replica `r` again on its files (it must be down), with its clock shifted by
    /// `offset_ms` (0: none); its new URL goes to the clients.
    pub async fn restart(&mut self, r: usize, offset_ms: i64) {
        let replica = &mut self.replicas[r];
        assert!(replica.bridge.is_none(), "replica {r} is running");
        let bridge = if offset_ms == 0 {
            replica.files.start().await
        } else {
            replica
                .files
                .start_with_env(&[(CLOCK_OFFSET_ENV.to_string(), offset_ms.to_string())])
                .await
        };
        replica.offset_ms = offset_ms;
        self.urls.write().unwrap()[r] = Some(bridge.url().to_string());
        replica.bridge = Some(bridge);
    }

    /// Replica `r`'s clock offset (ms).
    pub fn offset_ms(&self, r: usize) -> i64 {
        self.replicas[r].offset_ms
    }

    /// Sets replica `r`'s link to the database.
    pub fn set_link(&self, r: usize, mode: LinkMode) {
        self.replicas[r].link.set_mode(mode);
    }

    /// Heals everything: links pass, paused replicas go on, killed ones start again, shifted
    /// clocks are set right (a restart); returns what was done.
    pub async fn heal(&mut self) -> Vec<String> {
        let mut done = Vec::new();
        for r in 0..self.replicas.len() {
            if self.replicas[r].link.mode() != LinkMode::Pass {
                self.set_link(r, LinkMode::Pass);
                done.push(format!("r{r}: link healed"));
            }
            if self.replicas[r].paused {
                self.pause(r, false);
                done.push(format!("r{r}: resumed"));
            }
            if self.replicas[r].offset_ms != 0 {
                self.kill(r);
                done.push(format!("r{r}: restarted without its clock offset"));
            }
            if self.replicas[r].bridge.is_none() {
                self.restart(r, 0).await;
                done.push(format!("r{r}: started"));
            }
        }
        done
    }
}
