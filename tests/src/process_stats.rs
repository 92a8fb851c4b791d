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
