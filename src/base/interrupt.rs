//! Interruption: every temp file and scratch directory ferry is writing is
//! registered here while it exists, so that a front end that catches
//! Ctrl-C or SIGTERM can remove them all ([`remove_registered`]) before it
//! exits, leaving nothing half-written behind. Registration ends (the
//! guard is dropped) just before a temp file is renamed to its final name,
//! so a final file is never removed.
//!
//! The library installs no signal handler and never exits; that is the
//! front end's decision.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

static LIVE: Mutex<BTreeMap<u64, PathBuf>> = Mutex::new(BTreeMap::new());
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Keeps a path registered until dropped.
#[derive(Debug)]
#[must_use = "the path is unregistered when this is dropped"]
pub struct Registered(u64);

impl Drop for Registered {
    fn drop(&mut self) {
        live().remove(&self.0);
    }
}

fn live() -> std::sync::MutexGuard<'static, BTreeMap<u64, PathBuf>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registers a temp file or directory for removal on interruption.
pub fn register(path: &Path) -> Registered {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    live().insert(id, path.to_owned());
    Registered(id)
}

/// Removes every registered temp file and directory; returns how many
/// were removed. Meant for a signal handler's thread, right before exit.
pub fn remove_registered() -> usize {
    let paths: Vec<PathBuf> = std::mem::take(&mut *live()).into_values().collect();
    let mut removed = 0;
    for p in paths {
        let gone = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        if gone.is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_paths_are_removed_and_dropped_ones_are_not() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, c) = (d.path().join("a"), d.path().join("b"), d.path().join("c"));
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        std::fs::create_dir_all(c.join("x")).unwrap();
        let _ra = register(&a);
        let rb = register(&b);
        let _rc = register(&c);
        drop(rb);
        assert!(remove_registered() >= 2);
        assert!(!a.exists() && !c.exists());
        assert!(b.exists(), "an unregistered path is left alone");
    }
}
