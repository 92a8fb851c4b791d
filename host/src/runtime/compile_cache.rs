//! The on-disk cache of compiled adapters: compiling a component takes seconds, loading the
//! native code compiled earlier by an engine with the same settings takes milliseconds.
//!
//! What the cache holds is loaded as native code without further checks, so whoever can write
//! to its directory can run code as the bridge: [`prepare_cache_dir`] refuses a directory other
//! users can write to.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use thiserror::Error;
use wasmtime::component::Component;

use anyhow::Context;

use crate::runtime::{LoadedAdapter, Runtime};

/// Why the adapter cache directory is refused.
#[derive(Debug, Error)]
pub enum CacheDirError {
    #[error("the adapter cache directory {dir} ([adapters] cache_dir) cannot be created or read: {source}")]
    Unusable { dir: PathBuf, source: std::io::Error },
    #[error("the adapter cache directory {dir} is not a directory")]
    NotADirectory { dir: PathBuf },
    #[error(
        "the adapter cache directory {dir} is writable by every user (mode {mode:04o}); compiled adapters \
         in it are loaded as native code: make it writable by the bridge's user only (chmod o-w)"
    )]
    WorldWritable { dir: PathBuf, mode: u32 },
    #[error(
        "the adapter cache directory {dir} is owned by uid {owner}, neither the bridge's user (uid {uid}) \
         nor root; compiled adapters in it are loaded as native code: use a directory of the bridge's user"
    )]
    ForeignOwner { dir: PathBuf, owner: u32, uid: u32 },
}

/// Creates the cache directory if needed and checks that only the bridge's user (or root) can
/// write to it: owned by the bridge's user or root, and not writable by every user.
pub fn prepare_cache_dir(dir: &Path) -> Result<(), CacheDirError> {
    let unusable = |source| CacheDirError::Unusable {
        dir: dir.to_path_buf(),
        source,
    };
    let metadata = match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(unusable)?;
            std::fs::metadata(dir).map_err(unusable)?
        }
        other => other.map_err(unusable)?,
    };
    if !metadata.is_dir() {
        return Err(CacheDirError::NotADirectory { dir: dir.to_path_buf() });
    }
    check_permissions(dir, &metadata)
}

#[cfg(unix)]
fn check_permissions(dir: &Path, metadata: &std::fs::Metadata) -> Result<(), CacheDirError> {
    use std::os::unix::fs::MetadataExt;
    let mode = metadata.mode() & 0o7777;
    // Even with the sticky bit (as /tmp has), anyone may create the file a later load reads:
    // the names are predictable.
    if mode & 0o002 != 0 {
        return Err(CacheDirError::WorldWritable {
            dir: dir.to_path_buf(),
            mode,
        });
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let owner = metadata.uid();
    if owner != uid && owner != 0 {
        return Err(CacheDirError::ForeignOwner {
            dir: dir.to_path_buf(),
            owner,
            uid,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_dir: &Path, _metadata: &std::fs::Metadata) -> Result<(), CacheDirError> {
    Ok(())
}

/// Whether a new compilation is written to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Caching {
    ReadWrite,
    /// Read what is there, write nothing: for a component not accepted yet (a deploy's, until
    /// its world and fixtures pass), so that rejected uploads leave nothing on disk.
    ReadOnly,
}

impl Runtime {
    /// Compiles `bytes`, or deserializes the compiled artefact cached under its hash.
    pub(super) fn compile_cached(
        &self,
        content_hash: &str,
        bytes: &[u8],
        caching: Caching,
    ) -> anyhow::Result<Component> {
        let file = self.cache_file(content_hash);
        if file.exists() {
            // SAFETY: the cache directory is the bridge's own; files in it were written by
            // `precompile_component` of an engine with the same compatibility hash (in the name).
            match unsafe { Component::deserialize_file(&self.engine, &file) } {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!(file = %file.display(), error = %e, "ignoring unusable cached adapter"),
            }
        }
        let compiled = crate::scheduler::compile_in_background(|| self.engine.precompile_component(bytes))
            .map_err(anyhow::Error::from)?;
        if caching == Caching::ReadWrite
            && let Err(e) = write_atomically(&file, &compiled)
        {
            tracing::warn!(file = %file.display(), error = %e, "cannot cache the compiled adapter");
        }
        // SAFETY: `compiled` was produced just above by this engine.
        unsafe { Component::deserialize(&self.engine, &compiled) }.map_err(anyhow::Error::from)
    }

    /// Writes `adapter`'s compiled code to the cache unless it is there: for a deployed
    /// component once it is accepted (loaded by [`Runtime::load_bytes_uncached`]).
    pub fn cache_compiled(&self, adapter: &LoadedAdapter) -> anyhow::Result<()> {
        let file = self.cache_file(&adapter.content_hash);
        if file.exists() {
            return Ok(());
        }
        let compiled = adapter.pre.component().serialize().map_err(anyhow::Error::from)?;
        write_atomically(&file, &compiled)
            .with_context(|| format!("caching the compiled adapter in {}", file.display()))
    }

    /// Deletes the compiled code of the component `content_hash` from the cache: this engine's
    /// and any left by engines of other settings (the same hash, another compatibility hash).
    /// Returns how many files went; a file that cannot be deleted is logged and left.
    pub fn uncache(&self, content_hash: &str) -> usize {
        let prefix = format!("{content_hash}-");
        let Ok(entries) = std::fs::read_dir(&self.cache_dir) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with(&prefix) && name.ends_with(".cwasm")) {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(file = %entry.path().display(), error = %e,
                    "cannot delete the compiled code of a version no longer kept"),
            }
        }
        removed
    }

    /// Where the compiled artefact of the component `content_hash` is cached for this engine.
    fn cache_file(&self, content_hash: &str) -> PathBuf {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        self.cache_dir
            .join(format!("{content_hash}-{:016x}.cwasm", hasher.finish()))
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dolphin-cache-dir-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_world_writable_cache_dir_is_refused_naming_it() {
        let dir = temp_dir();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = prepare_cache_dir(&dir).unwrap_err();
        assert!(
            matches!(error, CacheDirError::WorldWritable { mode: 0o777, .. }),
            "{error}"
        );
        let message = error.to_string();
        assert!(message.contains(&dir.display().to_string()), "{message}");
        assert!(message.contains("writable by every user"), "{message}");
        // With the sticky bit too: the cache's file names are predictable.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(matches!(
            prepare_cache_dir(&dir),
            Err(CacheDirError::WorldWritable { .. })
        ));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare_cache_dir(&dir).unwrap();
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_missing_cache_dir_is_created_and_a_file_is_refused() {
        let dir = temp_dir();
        let cache = dir.join("nested").join("cache");
        prepare_cache_dir(&cache).unwrap();
        assert!(cache.is_dir());
        let file = dir.join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(
            prepare_cache_dir(&file),
            Err(CacheDirError::NotADirectory { .. })
        ));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn uncaching_a_hash_deletes_its_compiled_code_for_every_engine_and_nothing_else() {
        let dir = temp_dir();
        let runtime = Runtime::new(dir.clone(), 512 << 10, 1, 4).unwrap();
        let (gone, kept) = ("a".repeat(64), "b".repeat(64));
        let files = [
            format!("{gone}-0123456789abcdef.cwasm"),
            format!("{gone}-fedcba9876543210.cwasm"),
            format!("{kept}-0123456789abcdef.cwasm"),
            format!("{gone}.wasm"),
        ];
        for file in &files {
            std::fs::write(dir.join(file), b"compiled").unwrap();
        }
        assert_eq!(runtime.uncache(&gone), 2);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [files[3].clone(), files[2].clone()]);
        assert_eq!(runtime.uncache(&gone), 0);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Only root can give a directory away; as root, a directory of another uid must be refused.
    #[test]
    fn a_cache_dir_of_another_user_is_refused() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let dir = temp_dir();
        std::os::unix::fs::chown(&dir, Some(12345), None).unwrap();
        let error = prepare_cache_dir(&dir).unwrap_err();
        assert!(
            matches!(
                error,
                CacheDirError::ForeignOwner {
                    owner: 12345,
                    uid: 0,
                    ..
                }
            ),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
