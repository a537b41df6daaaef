//! Model-based test: random operations on a store, checked against a
//! `BTreeMap` per tree, on the memory backend and on sled in both durability
//! modes. `Restart` closes the store and opens it again (sled: drop and reopen
//! the directory; memory: [`MemoryStore::restart`]); everything applied before
//! it must still be there.
//!
//! The number of cases is `PROPTEST_CASES` when set, else [`DEFAULT_CASES`].
//! Minimised failures are kept below as named scenarios.

use std::collections::BTreeMap;
use std::ops::Bound;

use meshd_storage::{Batch, Durability, MemoryStore, Options, Scan, SledStore, Store, Tree, Write};
use proptest::prelude::*;
use proptest::sample::select;
use tempfile::TempDir;

/// Cases per backend. 64 cases of up to 48 operations run in about a second
/// in a debug build, and caught each bug seeded into the backends to try the
/// test (a multi-tree batch dropping its last write, a restart losing a tree,
/// a reverse scan returning one entry too many, an `insert_if_absent` that
/// overwrites). Set `PROPTEST_CASES` for a longer hunt.
const DEFAULT_CASES: u32 = 64;

#[derive(Clone, Debug)]
enum Op {
    Put(Tree, Vec<u8>, Vec<u8>),
    Delete(Tree, Vec<u8>),
    Batch(Vec<Write>),
    InsertIfAbsent(Tree, Vec<u8>, Vec<u8>),
    Get(Tree, Vec<u8>),
    Scan(Tree, Scan),
    Flush,
    Restart,
}

/// The model: one ordered map per tree.
#[derive(Debug, Default)]
struct Model {
    trees: BTreeMap<Tree, BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl Model {
    fn tree(&mut self, tree: Tree) -> &mut BTreeMap<Vec<u8>, Vec<u8>> {
        self.trees.entry(tree).or_default()
    }

    fn apply(&mut self, write: &Write) {
        match write {
            Write::Put { tree, key, value } => {
                self.tree(*tree).insert(key.clone(), value.clone());
            }
            Write::Delete { tree, key } => {
                self.tree(*tree).remove(key);
            }
        }
    }

    /// A scan, written independently of the backends: filter, order, cut.
    fn scan(&mut self, tree: Tree, scan: &Scan) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut entries: Vec<_> = self
            .tree(tree)
            .iter()
            .filter(|(k, _)| scan.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if scan.reverse {
            entries.reverse();
        }
        entries.truncate(scan.limit.unwrap_or(usize::MAX));
        entries
    }
}

/// A backend under test, with its way of restarting.
trait Harness {
    fn store(&self) -> &dyn Store;
    fn restart(&mut self);
}

struct MemoryHarness(Option<MemoryStore>);

impl Harness for MemoryHarness {
    fn store(&self) -> &dyn Store {
        self.0.as_ref().expect("the store is open between operations")
    }

    fn restart(&mut self) {
        let store = self.0.take().expect("the store is open between operations");
        self.0 = Some(store.restart().expect("restart"));
    }
}

struct SledHarness {
    dir: TempDir,
    options: Options,
    store: Option<SledStore>,
}

impl SledHarness {
    fn new(durability: Durability) -> SledHarness {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let options = Options { durability, ..Options::default() };
        let store = SledStore::open(dir.path(), options.clone()).expect("open");
        SledHarness { dir, options, store: Some(store) }
    }
}

impl Harness for SledHarness {
    fn store(&self) -> &dyn Store {
        self.store.as_ref().expect("the store is open between operations")
    }

    fn restart(&mut self) {
        drop(self.store.take());
        self.store = Some(SledStore::open(self.dir.path(), self.options.clone()).expect("reopen"));
    }
}

/// Applies `ops` to the harness and the model, comparing every read and,
/// after every restart and at the end, the whole content of every tree.
fn run(harness: &mut dyn Harness, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    // The schema stamp is the one entry a new store holds.
    for tree in Tree::ALL {
        for (key, value) in harness.store().scan(tree, &Scan::all()).expect("scan") {
            model.tree(tree).insert(key, value);
        }
    }
    prop_assert_eq!(model.trees.values().map(BTreeMap::len).sum::<usize>(), 1);

    for op in ops {
        let store = harness.store();
        match op {
            Op::Put(tree, key, value) => {
                store.put(*tree, key, value).expect("put");
                model.apply(&Write::Put { tree: *tree, key: key.clone(), value: value.clone() });
            }
            Op::Delete(tree, key) => {
                store.delete(*tree, key).expect("delete");
                model.apply(&Write::Delete { tree: *tree, key: key.clone() });
            }
            Op::Batch(writes) => {
                store.apply(&Batch::from(writes.clone())).expect("apply");
                writes.iter().for_each(|w| model.apply(w));
            }
            Op::InsertIfAbsent(tree, key, value) => {
                let existing = store.insert_if_absent(*tree, key, value).expect("insert_if_absent");
                let expected = model.tree(*tree).get(key).cloned();
                prop_assert_eq!(&existing, &expected);
                if expected.is_none() {
                    model.tree(*tree).insert(key.clone(), value.clone());
                }
            }
            Op::Get(tree, key) => {
                let got = store.get(*tree, key).expect("get");
                prop_assert_eq!(got, model.tree(*tree).get(key).cloned());
            }
            Op::Scan(tree, scan) => {
                let got = store.scan(*tree, scan).expect("scan");
                prop_assert_eq!(got, model.scan(*tree, scan));
            }
            Op::Flush => store.flush().expect("flush"),
            Op::Restart => {
                harness.restart();
                compare_all(harness.store(), &mut model)?;
            }
        }
    }
    compare_all(harness.store(), &mut model)
}

fn compare_all(store: &dyn Store, model: &mut Model) -> Result<(), TestCaseError> {
    for tree in Tree::ALL {
        prop_assert_eq!(
            store.scan(tree, &Scan::all()).expect("scan"),
            model.scan(tree, &Scan::all()),
            "{}",
            tree
        );
    }
    Ok(())
}

fn tree() -> impl Strategy<Value = Tree> {
    select(Tree::ALL.to_vec())
}

/// Keys from four bytes, at most three long: few enough that operations
/// collide on keys, with the edge bytes 0x00 and 0xff that prefix and range
/// bounds get wrong. None equals the schema key, so the stamp is never touched.
fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(select(vec![0x00u8, 0x01, 0x7f, 0xff]), 0..=3)
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..24)
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![Just(Bound::Unbounded), key().prop_map(Bound::Included), key().prop_map(Bound::Excluded)]
}

fn scan() -> impl Strategy<Value = Scan> {
    (bound(), bound(), any::<bool>(), prop::option::of(0usize..5))
        .prop_map(|(start, end, reverse, limit)| Scan { start, end, reverse, limit })
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        3 => (tree(), key(), value()).prop_map(|(tree, key, value)| Write::Put { tree, key, value }),
        1 => (tree(), key()).prop_map(|(tree, key)| Write::Delete { tree, key }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (tree(), key(), value()).prop_map(|(t, k, v)| Op::Put(t, k, v)),
        2 => (tree(), key()).prop_map(|(t, k)| Op::Delete(t, k)),
        2 => prop::collection::vec(write(), 0..8).prop_map(Op::Batch),
        1 => (tree(), key(), value()).prop_map(|(t, k, v)| Op::InsertIfAbsent(t, k, v)),
        3 => (tree(), key()).prop_map(|(t, k)| Op::Get(t, k)),
        3 => (tree(), scan()).prop_map(|(t, s)| Op::Scan(t, s)),
        1 => Just(Op::Flush),
        1 => Just(Op::Restart),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..48)
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(DEFAULT_CASES);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn memory_store_behaves_like_the_model(ops in ops()) {
        run(&mut MemoryHarness(Some(MemoryStore::new())), &ops)?;
    }

    #[test]
    fn sled_store_durable_on_every_write_behaves_like_the_model(ops in ops()) {
        run(&mut SledHarness::new(Durability::EveryWrite), &ops)?;
    }

    #[test]
    fn sled_store_durable_on_flush_behaves_like_the_model(ops in ops()) {
        run(&mut SledHarness::new(Durability::OnFlush), &ops)?;
    }
}

/// Scenarios, each run on every backend: minimised failures found while
/// writing the backends, and edges worth naming.
fn on_every_backend(ops: &[Op]) {
    let harnesses: Vec<Box<dyn Harness>> = vec![
        Box::new(MemoryHarness(Some(MemoryStore::new()))),
        Box::new(SledHarness::new(Durability::EveryWrite)),
        Box::new(SledHarness::new(Durability::OnFlush)),
    ];
    for mut harness in harnesses {
        if let Err(failure) = run(harness.as_mut(), ops) {
            panic!("{failure}");
        }
    }
}

#[test]
fn a_delete_before_a_restart_stays_deleted() {
    on_every_backend(&[
        Op::Put(Tree::Reports, vec![1], vec![1]),
        Op::Delete(Tree::Reports, vec![1]),
        Op::Restart,
        Op::Get(Tree::Reports, vec![1]),
    ]);
}

#[test]
fn the_last_write_to_a_key_in_a_batch_wins() {
    on_every_backend(&[
        Op::Batch(vec![
            Write::Put { tree: Tree::Votes, key: vec![0], value: vec![1] },
            Write::Delete { tree: Tree::Votes, key: vec![0] },
            Write::Put { tree: Tree::Meters, key: vec![0], value: vec![2] },
            Write::Put { tree: Tree::Meters, key: vec![0], value: vec![3] },
        ]),
        Op::Restart,
    ]);
}

#[test]
fn insert_if_absent_after_a_delete_inserts() {
    on_every_backend(&[
        Op::InsertIfAbsent(Tree::Votes, vec![7], vec![1]),
        Op::InsertIfAbsent(Tree::Votes, vec![7], vec![2]),
        Op::Delete(Tree::Votes, vec![7]),
        Op::InsertIfAbsent(Tree::Votes, vec![7], vec![3]),
        Op::Restart,
    ]);
}

#[test]
fn the_empty_key_and_empty_values_are_ordinary_entries() {
    on_every_backend(&[
        Op::Put(Tree::Anchors, vec![], vec![]),
        Op::Put(Tree::Anchors, vec![0xff, 0xff, 0xff], vec![]),
        Op::Scan(Tree::Anchors, Scan::prefix(&[])),
        Op::Scan(Tree::Anchors, Scan::prefix(&[0xff]).reverse().limit(1)),
        Op::Restart,
    ]);
}

#[test]
fn inverted_and_empty_ranges_list_nothing() {
    on_every_backend(&[
        Op::Put(Tree::Beacons, vec![1], vec![1]),
        Op::Scan(Tree::Beacons, Scan::range(Bound::Included(vec![2]), Bound::Included(vec![1]))),
        Op::Scan(Tree::Beacons, Scan::range(Bound::Excluded(vec![1]), Bound::Excluded(vec![1]))),
        Op::Scan(Tree::Beacons, Scan::range(Bound::Excluded(vec![1]), Bound::Included(vec![1]))),
    ]);
}
