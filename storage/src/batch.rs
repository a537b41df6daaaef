//! [`Batch`]: writes across trees that land together or not at all.

use crate::tree::Tree;

/// One write of a [`Batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Set `key` in `tree` to `value`, replacing any previous value.
    Put {
        /// The tree.
        tree: Tree,
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove `key` from `tree` (nothing happens when it is absent).
    Delete {
        /// The tree.
        tree: Tree,
        /// The key.
        key: Vec<u8>,
    },
}

impl Write {
    /// The tree this write changes.
    pub fn tree(&self) -> Tree {
        match self {
            Write::Put { tree, .. } | Write::Delete { tree, .. } => *tree,
        }
    }

    /// The key this write changes.
    pub fn key(&self) -> &[u8] {
        match self {
            Write::Put { key, .. } | Write::Delete { key, .. } => key,
        }
    }
}

/// Puts and deletes across any trees, applied atomically by
/// [`Store::apply`](crate::Store::apply): after a crash either every write of
/// the batch is there or none is.
///
/// Writes apply in the order they were added, so when two touch the same key
/// the later one wins. Typed writes (`put_report`, `put_summary`, …) are
/// methods of `Batch` too, next to the typed reads of [`StoreExt`](crate::StoreExt).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    writes: Vec<Write>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// Adds a put of raw bytes.
    pub fn put(&mut self, tree: Tree, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> &mut Self {
        self.writes.push(Write::Put { tree, key: key.into(), value: value.into() });
        self
    }

    /// Adds a delete.
    pub fn delete(&mut self, tree: Tree, key: impl Into<Vec<u8>>) -> &mut Self {
        self.writes.push(Write::Delete { tree, key: key.into() });
        self
    }

    /// The writes, in the order they apply.
    pub fn writes(&self) -> &[Write] {
        &self.writes
    }

    /// How many writes the batch holds.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Whether the batch holds no write.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

impl From<Vec<Write>> for Batch {
    fn from(writes: Vec<Write>) -> Self {
        Batch { writes }
    }
}
