//! A string-keyed index that stores only positions in one of the snapshot's tables.
//!
//! The snapshot's member and card tables already hold every id, email, Cobot user id and card
//! id; a `HashMap<String, u32>` per index copied each of them once more (with 10,000 members the
//! four indexes were about half of the compiled snapshot, and 40,000 small allocations). Here
//! the table keeps only the 4-byte position, and the key is read from the snapshot's table when
//! two hashes match: the caller passes `key_of`, which gives the key at a position. One key may
//! have several positions (an email shared by two members); lookups return them in ascending
//! order, which is the table's order.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

/// Positions by key; the keys live in the table the positions point into.
#[derive(Debug, Default)]
pub(crate) struct PosIndex {
    table: HashTable<u32>,
    hasher: RandomState,
}

impl PosIndex {
    /// An empty index with room for `n` positions.
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            table: HashTable::with_capacity(n),
            hasher: RandomState::new(),
        }
    }

    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Adds position `pos` under `key`; `key_of` gives the key of a position already in the index
    /// (for growing the table).
    pub(crate) fn insert<'k>(&mut self, key: &str, pos: u32, key_of: impl Fn(u32) -> Cow<'k>) {
        let hash = self.hash(key);
        let Self { table, hasher } = self;
        table.insert_unique(hash, pos, |&p| hasher.hash_one(key_of(p).as_ref()));
    }

    /// The position of a key that has one (a membership id, a card id); no allocation, so the
    /// card lookup of a decision stays cheap.
    pub(crate) fn get<'k>(&self, key: &str, key_of: impl Fn(u32) -> Cow<'k>) -> Option<u32> {
        self.table
            .find(self.hash(key), |&p| key_of(p).as_ref() == key)
            .copied()
    }

    /// Every position whose key is `key`, ascending.
    pub(crate) fn all<'k>(&self, key: &str, key_of: impl Fn(u32) -> Cow<'k>) -> Vec<u32> {
        let mut found: Vec<u32> = self
            .table
            .iter_hash(self.hash(key))
            .copied()
            .filter(|&p| key_of(p).as_ref() == key)
            .collect();
        found.sort_unstable();
        found
    }

    /// Whether some position has the key `key`.
    pub(crate) fn contains<'k>(&self, key: &str, key_of: impl Fn(u32) -> Cow<'k>) -> bool {
        self.table
            .iter_hash(self.hash(key))
            .any(|&p| key_of(p).as_ref() == key)
    }
}

/// A key read from a table: borrowed, or made (a lower-cased email).
pub(crate) type Cow<'k> = std::borrow::Cow<'k, str>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_found_by_the_key_in_the_table_and_shared_keys_give_all_in_order() {
        let keys = ["ada", "grace", "ada", "alan"];
        let key_of = |p: u32| Cow::Borrowed(keys[p as usize]);
        let mut index = PosIndex::with_capacity(1);
        for (p, key) in keys.iter().enumerate() {
            index.insert(key, p as u32, key_of);
        }
        assert_eq!(index.all("ada", key_of), [0, 2]);
        assert!(matches!(index.get("ada", key_of), Some(0 | 2)));
        assert_eq!(index.get("alan", key_of), Some(3));
        assert_eq!(index.get("edsger", key_of), None);
        assert!(index.contains("grace", key_of));
        assert!(!index.contains("", key_of));
    }
}
