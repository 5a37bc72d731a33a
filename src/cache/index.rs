//! The store's side index: every live entry by key (TinyUFO cannot be iterated) and the
//! keys under each cache tag, so a purge by tag costs the entries with the tag, not a
//! scan of the store.

use pingora::cache::key::HashBinary;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What the index needs of an entry (a memory entry or a disk one).
pub trait Indexed {
    fn key(&self) -> HashBinary;
    fn url(&self) -> &str;
    fn tags(&self) -> &[Arc<str>];
}

pub struct Index<E> {
    entries: HashMap<HashBinary, Arc<E>>,
    by_tag: HashMap<Arc<str>, HashSet<HashBinary>>,
}

impl<E> Default for Index<E> {
    fn default() -> Self {
        Index {
            entries: HashMap::new(),
            by_tag: HashMap::new(),
        }
    }
}

impl<E: Indexed> Index<E> {
    /// Adds `entry`, returning the one it replaces.
    pub fn insert(&mut self, entry: Arc<E>) -> Option<Arc<E>> {
        let key = entry.key();
        for tag in entry.tags() {
            self.by_tag.entry(tag.clone()).or_default().insert(key);
        }
        let old = self.entries.insert(key, entry.clone())?;
        // Tags the new version no longer has stop pointing at the key.
        for tag in old.tags().iter().filter(|t| !entry.tags().contains(t)) {
            self.untag(tag, &key);
        }
        Some(old)
    }

    pub fn remove(&mut self, key: &HashBinary) -> Option<Arc<E>> {
        let old = self.entries.remove(key)?;
        for tag in old.tags() {
            self.untag(tag, key);
        }
        Some(old)
    }

    /// The keys of entries whose URL passes `matches`.
    pub fn matching_urls(&self, matches: impl Fn(&str) -> bool) -> Vec<HashBinary> {
        self.entries
            .values()
            .filter(|e| matches(e.url()))
            .map(|e| e.key())
            .collect()
    }

    fn untag(&mut self, tag: &Arc<str>, key: &HashBinary) {
        if let Some(keys) = self.by_tag.get_mut(tag) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_tag.remove(tag);
            }
        }
    }

    pub fn get(&self, key: &HashBinary) -> Option<&Arc<E>> {
        self.entries.get(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn values(&self) -> impl Iterator<Item = &Arc<E>> {
        self.entries.values()
    }

    /// The keys of the entries tagged `tag`.
    pub fn tagged(&self, tag: &str) -> impl Iterator<Item = HashBinary> + '_ {
        self.by_tag.get(tag).into_iter().flat_map(|keys| keys.iter().copied())
    }

    /// How many tags are indexed.
    #[cfg(test)]
    pub fn tag_count(&self) -> usize {
        self.by_tag.len()
    }
}
