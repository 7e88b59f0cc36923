//! The pulls in progress of an agent, and the chunks of each verified so far: what lets a new
//! artifact spread from its first holder to pullers that serve each other before they finish.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::manifest::Manifest;

/// A pull in progress, as the server sees it: its manifest, its file, and the chunks verified.
#[derive(Debug)]
pub struct Partial {
    /// The manifest being pulled.
    pub manifest: Manifest,
    /// The file being written.
    pub path: PathBuf,
    have: Mutex<Vec<bool>>,
}

impl Partial {
    /// Which chunks are verified and written.
    pub fn have(&self) -> Vec<bool> {
        self.have
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Marks a chunk verified and written.
    pub fn mark(&self, chunk: usize) {
        if let Some(c) = self
            .have
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(chunk)
        {
            *c = true;
        }
    }

    /// Marks a chunk not held (found bad in the whole-file check).
    pub fn unmark(&self, chunk: usize) {
        if let Some(c) = self
            .have
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(chunk)
        {
            *c = false;
        }
    }

    /// Whether every chunk touching `range` is verified.
    pub(super) fn covers(&self, range: &Range<u64>) -> bool {
        let chunk = self.manifest.chunk_size.max(1);
        let first = usize::try_from(range.start / chunk).unwrap_or(usize::MAX);
        let last = usize::try_from(range.end.saturating_sub(1) / chunk).unwrap_or(usize::MAX);
        let have = self
            .have
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (first..=last).all(|c| have.get(c).copied().unwrap_or(false))
    }
}

/// The pulls in progress of one agent.
#[derive(Debug, Default)]
pub struct Partials {
    map: Mutex<HashMap<String, Arc<Partial>>>,
}

impl Partials {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Partial>>> {
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a pull; its verified chunks are served from now on.
    pub fn insert(&self, manifest: Manifest, path: PathBuf, have: Vec<bool>) -> Arc<Partial> {
        let p = Arc::new(Partial {
            manifest,
            path,
            have: Mutex::new(have),
        });
        self.lock().insert(p.manifest.digest.clone(), p.clone());
        p
    }

    /// Forgets a pull (done or abandoned).
    pub fn remove(&self, digest: &str) {
        self.lock().remove(digest);
    }

    /// The pull of `digest`, if one runs.
    pub fn get(&self, digest: &str) -> Option<Arc<Partial>> {
        self.lock().get(digest).cloned()
    }

    /// Digests being pulled.
    pub fn digests(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }
}
