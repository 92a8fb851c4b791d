//! One server per store: two servers on one database would both deliver the same heads.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::Context;

/// An exclusive `flock` on the store's lock file, held for as long as the value lives (and
/// released by the kernel when the process dies, so a crash never leaves it behind).
pub struct ServerLock {
    _file: File,
}

impl ServerLock {
    /// Takes the lock of the store at `store`, or says which process-wide lock is held.
    pub fn acquire(store: &Path) -> anyhow::Result<ServerLock> {
        let path = super::lock_path(store);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| {
                format!(
                    "cannot create the folder of the store {} ([store] path)",
                    store.display()
                )
            })?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot write the store's lock file {}", path.display()))?;
        // SAFETY: flock on a file descriptor this function owns.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !locked {
            anyhow::bail!(
                "another `dolphin-bridge serve` is using the store {} (its lock {} is held): run one server per store",
                store.display(),
                path.display()
            );
        }
        Ok(ServerLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_store_is_refused_until_the_first_is_dropped() {
        let dir = tempfile_dir();
        let store = dir.join("bridge.db");
        let first = ServerLock::acquire(&store).unwrap();
        let second = ServerLock::acquire(&store).err().expect("second lock refused");
        assert!(second.to_string().contains("run one server per store"), "{second}");
        drop(first);
        ServerLock::acquire(&store).expect("free again");
        std::fs::remove_dir_all(dir).ok();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("dolphin-lock-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
