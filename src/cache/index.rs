//! The store's side index: every live entry by key (TinyUFO cannot be iterated) and the
//! keys under each cache tag, so a purge by tag costs the entries with the tag, not a
//! scan of the store.

use super::entry::Entry;
use pingora::cache::key::HashBinary;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

#[derive(Default)]
pub struct Index {
    entries: HashMap<HashBinary, Arc<Entry>>,
    by_tag: HashMap<Arc<str>, HashSet<HashBinary>>,
}

impl Index {
    /// Adds `entry`, returning the one it replaces.
    pub fn insert(&mut self, entry: Arc<Entry>) -> Option<Arc<Entry>> {
        for tag in entry.tags.iter() {
            self.by_tag.entry(tag.clone()).or_default().insert(entry.key);
        }
        let old = self.entries.insert(entry.key, entry.clone())?;
        // Tags the new version no longer has stop pointing at the key.
        for tag in old.tags.iter().filter(|t| !entry.tags.contains(t)) {
            self.untag(tag, &old.key);
        }
        Some(old)
    }

    pub fn remove(&mut self, key: &HashBinary) -> Option<Arc<Entry>> {
        let old = self.entries.remove(key)?;
        for tag in old.tags.iter() {
            self.untag(tag, key);
        }
        Some(old)
    }

    fn untag(&mut self, tag: &Arc<str>, key: &HashBinary) {
        if let Some(keys) = self.by_tag.get_mut(tag) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_tag.remove(tag);
            }
        }
    }

    pub fn get(&self, key: &HashBinary) -> Option<&Arc<Entry>> {
        self.entries.get(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn values(&self) -> impl Iterator<Item = &Arc<Entry>> {
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
