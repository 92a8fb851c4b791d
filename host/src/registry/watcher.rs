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
        let mut files: HashSet<PathBuf> = config.tenants.iter().map(|t| normalize(&t.adapter)).collect();
        files.insert(normalize(&config.source));
        watcher.watch_folders_of(&files);
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
