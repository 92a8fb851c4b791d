//! File watching for hot reload (`notify`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use notify::{EventKindMask, RecursiveMode, Watcher};

use crate::config::Config;

/// Watches the folders of the configuration and adapter files (folders rather than files, so
/// that write-to-temp-then-rename deploys and editors that replace files are seen). Started
/// before the first load, so that a change made while adapters compile is not missed.
///
/// A file is seen changed when it is created, renamed, removed, has its metadata changed or is
/// closed after writing, never at each write: the embedded store lives beside the configuration
/// by default, and a kernel event for each of its writes cost the store's writer a ninth of its
/// time under load (`perf`), plus a wake-up of the watcher's thread.
pub struct ChangeWatcher {
    watcher: notify::RecommendedWatcher,
    pub(super) events: tokio::sync::mpsc::UnboundedReceiver<Vec<PathBuf>>,
    folders: HashSet<PathBuf>,
}

impl ChangeWatcher {
    /// Starts watching the folders of `config`'s file and its tenants' adapters.
    pub fn start(config: &Config) -> anyhow::Result<ChangeWatcher> {
        let mut files: HashSet<PathBuf> = config.tenants.iter().map(|t| normalize(&t.adapter)).collect();
        files.insert(normalize(&config.source));
        Self::watching(&files)
    }

    /// Starts watching the folders of `files`.
    fn watching(files: &HashSet<PathBuf>) -> anyhow::Result<ChangeWatcher> {
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let kinds = EventKindMask::CREATE
            | EventKindMask::REMOVE
            | EventKindMask::MODIFY_NAME
            | EventKindMask::MODIFY_META
            | EventKindMask::ACCESS_CLOSE;
        let handler = move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                let _ = tx.send(event.paths);
            }
        };
        let watcher = notify::RecommendedWatcher::new(handler, notify::Config::default().with_event_kinds(kinds))
            .context("starting the file watcher")?;
        let mut watcher = ChangeWatcher {
            watcher,
            events,
            folders: HashSet::new(),
        };
        watcher.watch_folders_of(files);
        Ok(watcher)
    }

    /// Adds the folders of `files` not watched yet.
    pub(super) fn watch_folders_of(&mut self, files: &HashSet<PathBuf>) {
        for dir in files.iter().filter_map(|f| f.parent()) {
            if self.folders.contains(dir) {
                continue;
            }
            match self.watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.folders.insert(dir.to_path_buf());
                }
                // A folder that does not exist (yet) is tried again after the next reload; the
                // load that needs a file in it says what is missing.
                Err(e) if !dir.exists() => {
                    tracing::debug!(dir = %dir.display(), error = %e, "folder to watch is missing")
                }
                Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot watch folder"),
            }
        }
    }
}

/// `path` with its folder made canonical, so that paths named differently (relative, `..`,
/// symlinked folders) compare equal, even when the file itself is gone.
pub(super) fn normalize(path: &Path) -> PathBuf {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = parent.canonicalize().unwrap_or_else(|_| parent.to_path_buf());
    match path.file_name() {
        Some(name) => parent.join(name),
        None => parent,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::time::Duration;

    use super::*;

    /// Item: the embedded store beside the configuration (its default place) writes to files it
    /// holds open at every commit; those writes must raise no event (each cost the store's
    /// writer a kernel event and woke the watcher's thread), while an edit of the configuration
    /// still does.
    #[tokio::test]
    async fn writes_to_a_file_held_open_raise_no_event_and_a_saved_configuration_does() {
        let dir = std::env::temp_dir().join(format!("dolphin-watch-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("bridge.toml");
        std::fs::write(&config, "# first").unwrap();
        let mut wal = std::fs::File::create(dir.join("bridge.db-wal")).unwrap();
        let mut watcher = ChangeWatcher::watching(&HashSet::from([normalize(&config)])).unwrap();
        for frame in 0..50 {
            wal.write_all(format!("frame {frame}").as_bytes()).unwrap();
            wal.sync_data().unwrap();
        }
        let seen = tokio::time::timeout(Duration::from_millis(500), watcher.events.recv()).await;
        assert!(seen.is_err(), "an event for writes to a file held open: {seen:?}");
        std::fs::write(&config, "# second").unwrap();
        let paths = tokio::time::timeout(Duration::from_secs(10), watcher.events.recv())
            .await
            .expect("an event for the saved configuration")
            .expect("the watcher is running");
        assert!(paths.iter().any(|p| normalize(p) == normalize(&config)), "{paths:?}");
        drop(wal);
        std::fs::remove_dir_all(dir).ok();
    }
}
