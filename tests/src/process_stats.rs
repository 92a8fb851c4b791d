//! What a running process holds, read from `/proc` (Linux): its open descriptors and its
//! resident memory. The abuse test samples the bridge with it before, during and after an attack.

use std::path::Path;

/// One reading of a process's resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessStats {
    /// Entries of `/proc/PID/fd`: files, sockets, pipes and the like held open.
    pub open_fds: usize,
    /// `VmRSS` of `/proc/PID/status`, in KiB: the memory the process has resident.
    pub rss_kib: u64,
}

impl ProcessStats {
    /// Reads process `pid`'s figures; `None` when it is gone (or `/proc` is not there).
    pub fn read(pid: u32) -> Option<ProcessStats> {
        let proc_dir = Path::new("/proc").join(pid.to_string());
        let open_fds = std::fs::read_dir(proc_dir.join("fd")).ok()?.count();
        let status = std::fs::read_to_string(proc_dir.join("status")).ok()?;
        let rss_kib = vm_rss_kib(&status)?;
        Some(ProcessStats { open_fds, rss_kib })
    }

    /// The resident memory in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }
}

/// What process `pid`'s descriptors are, counted by kind: `file`, `pipe`, `anon`, and for TCP
/// sockets their state and which end is the process's listening `port` (`in :PORT established`,
/// `out established`, `listen`), so a report says what a growth is made of.
pub fn descriptor_kinds(pid: u32, port: u16) -> std::collections::BTreeMap<String, usize> {
    let sockets = tcp_sockets();
    let mut kinds = std::collections::BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(Path::new("/proc").join(pid.to_string()).join("fd")) else {
        return kinds;
    };
    for entry in entries.flatten() {
        let target = std::fs::read_link(entry.path())
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        let kind = if let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
            match sockets.get(inode) {
                Some((local, _, "0A")) => format!("tcp listen :{local}"),
                Some((local, _, state)) if *local == port => format!("tcp in :{port} {}", tcp_state(state)),
                Some((_, remote, state)) => format!("tcp out :{remote} {}", tcp_state(state)),
                None => "socket (not tcp)".into(),
            }
        } else if target.starts_with("pipe:") {
            "pipe".into()
        } else if target.starts_with("anon_inode:") {
            target
        } else {
            "file".into()
        };
        *kinds.entry(kind).or_insert(0) += 1;
    }
    kinds
}

/// TCP sockets of this machine by inode: local port, remote port, state (hex, as `/proc/net/tcp`).
fn tcp_sockets() -> std::collections::HashMap<String, (u16, u16, &'static str)> {
    let mut sockets = std::collections::HashMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 {
                continue;
            }
            let port = |address: &str| {
                address
                    .rsplit(':')
                    .next()
                    .and_then(|hex| u16::from_str_radix(hex, 16).ok())
                    .unwrap_or(0)
            };
            let state: &'static str = match fields[3] {
                "01" => "01",
                "06" => "06",
                "08" => "08",
                "0A" => "0A",
                _ => "other",
            };
            sockets.insert(fields[9].to_string(), (port(fields[1]), port(fields[2]), state));
        }
    }
    sockets
}

fn tcp_state(hex: &str) -> &'static str {
    match hex {
        "01" => "established",
        "06" => "time-wait",
        "08" => "close-wait",
        _ => "other",
    }
}

/// The `VmRSS:  1234 kB` line of a `/proc/PID/status` text, in KiB.
fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let stats = ProcessStats::read(std::process::id()).expect("this process's figures");
        assert!(stats.open_fds >= 3, "{stats:?}");
        assert!(stats.rss_kib > 0, "{stats:?}");
    }

    #[test]
    fn parses_vm_rss() {
        assert_eq!(vm_rss_kib("Name:\tx\nVmRSS:\t   51200 kB\nVmSwap: 0 kB\n"), Some(51200));
        assert_eq!(vm_rss_kib("Name:\tx\n"), None);
    }
}
