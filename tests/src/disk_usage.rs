//! How much a folder holds on disk, in all, and per entry directly under it (the store, the
//! compile cache, the deployed versions, ...), for tests that check a process's disk use stays
//! flat.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The bytes a folder's files take, in all and per top-level entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Blocks allocated to every file under the folder, in bytes (sparse files count what they
    /// hold, not their length).
    pub total: u64,
    /// The same per entry directly under the folder (a file, or a sub-folder in all), by name.
    pub entries: BTreeMap<String, u64>,
}

impl DiskUsage {
    /// Walks `dir`; files that vanish meanwhile are skipped. Symbolic links are not followed.
    pub fn of(dir: &Path) -> DiskUsage {
        let mut usage = DiskUsage::default();
        let Ok(read) = std::fs::read_dir(dir) else {
            return usage;
        };
        for entry in read.flatten() {
            let bytes = allocated(&entry.path());
            usage.total += bytes;
            usage
                .entries
                .insert(entry.file_name().to_string_lossy().into_owned(), bytes);
        }
        usage
    }

    /// The bytes under the top-level entries whose names start with one of `prefixes`.
    pub fn under(&self, prefixes: &[&str]) -> u64 {
        self.entries
            .iter()
            .filter(|(name, _)| prefixes.iter().any(|p| name.starts_with(p)))
            .map(|(_, bytes)| bytes)
            .sum()
    }

    /// The bytes under every other top-level entry.
    pub fn outside(&self, prefixes: &[&str]) -> u64 {
        self.total - self.under(prefixes)
    }
}

/// Blocks allocated under `path` (a file, or a folder walked whole), in bytes.
fn allocated(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.blocks() * 512;
    }
    let own = meta.blocks() * 512;
    let Ok(read) = std::fs::read_dir(path) else {
        return own;
    };
    own + read.flatten().map(|entry| allocated(&entry.path())).sum::<u64>()
}

/// Bytes as MiB, for printing.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_files_per_top_level_entry() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("cache")).unwrap();
        std::fs::write(dir.path().join("cache").join("a"), vec![1u8; 64 * 1024]).unwrap();
        std::fs::write(dir.path().join("bridge.db"), vec![1u8; 8 * 1024]).unwrap();
        let usage = DiskUsage::of(dir.path());
        assert!(usage.entries["cache"] >= 64 * 1024, "{usage:?}");
        assert!(usage.entries["bridge.db"] >= 8 * 1024, "{usage:?}");
        assert_eq!(usage.under(&["cache"]) + usage.outside(&["cache"]), usage.total);
    }
}
