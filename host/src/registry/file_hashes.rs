//! Content hashes of adapter files remembered by (path, modification time, length), so that
//! listing a tenant's versions (`GET …/versions`, the status page) reads and hashes its
//! configured file only when it changed, not at every request. Reloads still read every file:
//! they compile what they read.

use std::collections::HashMap;
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::metrics::METRICS;
use crate::runtime::content_hash;

/// What a file was when it was hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl Stamp {
    fn of(metadata: &Metadata) -> Stamp {
        Stamp {
            modified: metadata.modified().ok(),
            len: metadata.len(),
        }
    }
}

/// The remembered hashes, one per configured adapter file.
#[derive(Debug, Default)]
pub(super) struct FileHashes {
    known: Mutex<HashMap<PathBuf, (Stamp, String)>>,
}

impl FileHashes {
    /// Remembers `hash` for the file at `path` as `metadata` (taken before it was read) shows it.
    pub(super) fn remember(&self, path: &Path, metadata: &Metadata, hash: &str) {
        self.known
            .lock()
            .expect("file hashes lock")
            .insert(path.to_path_buf(), (Stamp::of(metadata), hash.to_string()));
    }

    /// The content hash of the file at `path` and its metadata: remembered while the file's
    /// modification time and length are the same, else read, hashed and counted in
    /// `adapter_file_hashes_total`.
    pub(super) fn hash_of(&self, path: &Path) -> std::io::Result<(String, Metadata)> {
        let metadata = std::fs::metadata(path)?;
        let stamp = Stamp::of(&metadata);
        if let Some((known, hash)) = self.known.lock().expect("file hashes lock").get(path)
            && *known == stamp
        {
            return Ok((hash.clone(), metadata));
        }
        let hash = hash_file(&std::fs::read(path)?);
        self.remember(path, &metadata, &hash);
        Ok((hash, metadata))
    }

    /// Forgets every path but those in `keep`.
    pub(super) fn retain(&self, keep: impl Fn(&Path) -> bool) {
        self.known
            .lock()
            .expect("file hashes lock")
            .retain(|path, _| keep(path));
    }
}

/// [`content_hash`] of an adapter file's `bytes`, counted in `adapter_file_hashes_total`.
pub(super) fn hash_file(bytes: &[u8]) -> String {
    METRICS.adapter_file_hashes.inc();
    content_hash(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_hashed_again_only_when_it_changes() {
        let dir = std::env::temp_dir().join(format!("dolphin-file-hashes-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("adapter.wasm");
        std::fs::write(&file, b"first").unwrap();
        let hashes = FileHashes::default();
        let (first, _) = hashes.hash_of(&file).unwrap();
        assert_eq!(first, content_hash(b"first"));
        // The same answer without reading: the file is replaced behind the same stamp here.
        let metadata = std::fs::metadata(&file).unwrap();
        hashes.remember(&file, &metadata, "remembered");
        assert_eq!(hashes.hash_of(&file).unwrap().0, "remembered");
        // Another length: read again.
        std::fs::write(&file, b"second, longer").unwrap();
        assert_eq!(hashes.hash_of(&file).unwrap().0, content_hash(b"second, longer"));
        hashes.retain(|_| false);
        assert!(hashes.known.lock().unwrap().is_empty());
        std::fs::remove_dir_all(&dir).ok();
    }
}
