//! The owner-side tag index: the tags of each key and the keys of each
//! tag. Readers never see tags.

use super::*;

impl<K, V> Owner<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    /// Gives `key` these tags (replacing any it had).
    pub(super) fn set_tags(&mut self, hash: u64, key: &K, tags: Vec<Tag>) {
        self.clear_tags(key);
        if tags.is_empty() {
            return;
        }
        for t in &tags {
            self.keys_of
                .entry(t.clone())
                .or_default()
                .insert(key.clone(), hash);
        }
        self.tags_of.insert(key.clone(), tags.into_boxed_slice());
    }

    /// Removes `key` from the tag index.
    pub(super) fn clear_tags(&mut self, key: &K) {
        if self.tags_of.is_empty() {
            return; // the common case: nothing here is tagged
        }
        if let Some(tags) = self.tags_of.remove(key) {
            for t in tags.iter() {
                if let Some(keys) = self.keys_of.get_mut(t) {
                    keys.remove(key);
                    if keys.is_empty() {
                        self.keys_of.remove(t);
                    }
                }
            }
        }
    }
}
