//! Behaviour of the typed and raw APIs, checked on both backends, and the
//! open-time checks of the sled backend (schema versions, lock, permissions).

mod support;

use std::ops::Bound;

use meshd_protocol::geo::Region;
use meshd_protocol::merkle::{self, AnchorLeaf, MerkleTree};
use meshd_protocol::message::BeaconId;
use meshd_protocol::{GatewayId, Hash32, MeterId, codec};
use meshd_storage::key::{self, Step, VoteKey};
use meshd_storage::{
    AnchorRecord, AnchorSet, Batch, Error, MemoryStore, MeterState, Options, SCHEMA_VERSION, Scan,
    Settlement, SledStore, Store, StoreExt, Tree, VoteOutcome,
};
use support::{REGION, finalized, witness};

/// Runs each behaviour as one test per backend: `memory_backend::NAME` and
/// `sled_backend::NAME`.
macro_rules! on_both_backends {
    ($($name:ident($store:ident) $body:block)*) => {
        mod memory_backend {
            use super::*;
            $(
                #[test]
                fn $name() {
                    let backend = MemoryStore::new();
                    let $store: &dyn Store = &backend;
                    $body
                }
            )*
        }
        mod sled_backend {
            use super::*;
            $(
                #[test]
                fn $name() {
                    let dir = tempfile::tempdir().expect("a temporary directory");
                    let backend = SledStore::open(dir.path(), Options::default()).expect("open");
                    let $store: &dyn Store = &backend;
                    $body
                }
            )*
        }
    };
}

fn encode_version(version: u32) -> Vec<u8> {
    codec::encode_record::<u32, 4>(&version, "schema_version").expect("a u32 encodes")
}

on_both_backends! {
    new_store_is_stamped_with_the_current_schema_version(store) {
        assert_eq!(store.schema_version().expect("read"), Some(SCHEMA_VERSION));
    }

    reports_of_an_epoch_are_listed_in_id_order(store) {
        let mut expected = Vec::new();
        for n in 0..20 {
            let envelope = witness(5, n);
            let id = store.put_report(REGION, 5, &envelope).expect("put");
            assert_eq!(id, envelope.id().expect("id"));
            expected.push((id, envelope));
        }
        // Neighbouring epochs and regions must not leak into the listing.
        store.put_report(REGION, 4, &witness(4, 99)).expect("put");
        store.put_report(REGION, 6, &witness(6, 99)).expect("put");
        store.put_report(Region(REGION.0 + 1), 5, &witness(5, 99)).expect("put");
        expected.sort_by_key(|(id, _)| *id);
        assert_eq!(store.reports(REGION, 5).expect("list"), expected);
    }

    a_report_reads_back_as_the_stored_envelope(store) {
        let envelope = witness(1, 1);
        let id = store.put_report(REGION, 1, &envelope).expect("put");
        assert_eq!(store.report(REGION, 1, &id).expect("get"), Some(envelope));
        assert_eq!(store.report(REGION, 2, &id).expect("get"), None);
        let mut batch = Batch::new();
        batch.delete_report(REGION, 1, &id);
        store.apply(&batch).expect("delete");
        assert_eq!(store.report(REGION, 1, &id).expect("get"), None);
    }

    beacons_claiming_the_same_id_are_all_kept(store) {
        let beacon = BeaconId([9; 16]);
        let genuine = support::beacon(3, beacon, 1);
        let replayed = support::beacon(3, beacon, 2);
        let genuine_id = store.put_beacon(3, &beacon, &genuine).expect("put");
        let replayed_id = store.put_beacon(3, &beacon, &replayed).expect("put");
        store.put_beacon(3, &BeaconId([8; 16]), &support::beacon(3, BeaconId([8; 16]), 3)).expect("put");
        let mut expected = vec![(genuine_id, genuine), (replayed_id, replayed)];
        expected.sort_by_key(|(id, _)| *id);
        assert_eq!(store.beacons(3, &beacon).expect("list"), expected);
        assert!(store.beacons(4, &beacon).expect("list").is_empty());
    }

    meter_state_round_trips(store) {
        let meter = MeterId([3; 32]);
        assert_eq!(store.meter_state(&meter).expect("get"), None);
        let state = MeterState {
            last_sequence: 42,
            last_interval_end_s: 1_750_000_900,
            last_register_wh: 1_234_567,
            carried_wh: 999_999,
        };
        store.put_meter_state(&meter, &state).expect("put");
        assert_eq!(store.meter_state(&meter).expect("get"), Some(state));
    }

    a_settlement_reads_back_and_checks_against_its_summary(store) {
        let settlement = Settlement {
            region: REGION,
            epoch: 7,
            report_ids: vec![Hash32([1; 32]), Hash32([2; 32])],
            rewards: vec![(GatewayId([3; 32]), 40), (GatewayId([4; 32]), 2)],
            energy: vec![(MeterId([5; 32]), 1_250)],
        };
        let mut summary = finalized(REGION, 7).summary;
        summary.reports_root = MerkleTree::new(settlement.report_ids.iter().map(merkle::report_leaf)).root();
        summary.rewards_root =
            MerkleTree::new(settlement.rewards.iter().map(|(g, u)| merkle::reward_leaf(g, *u))).root();
        summary.energy_root =
            MerkleTree::new(settlement.energy.iter().map(|(m, wh)| merkle::energy_leaf(m, *wh))).root();
        assert_eq!(settlement.check_against(&summary), Ok(()));
        let mut batch = Batch::new();
        batch.put_settlement(&settlement).expect("put");
        store.apply(&batch).expect("apply");
        assert_eq!(store.settlement(REGION, 7).expect("get"), Some(settlement.clone()));
        assert_eq!(store.settlement(REGION, 8).expect("get"), None);

        // A list that does not rebuild its root is named.
        let mut wrong = settlement.clone();
        wrong.energy[0].1 += 1;
        let error = wrong.check_against(&summary).expect_err("another energy root");
        assert!(error.contains("energy_root"), "{error}");
        let mut elsewhere = settlement.clone();
        elsewhere.epoch = 8;
        assert!(elsewhere.check_against(&summary).is_err());
        // Past its limit it is refused before anything is written.
        let mut huge = settlement;
        huge.report_ids = vec![Hash32([1; 32]); meshd_storage::record::SETTLEMENT_MAX_ENTRIES + 1];
        assert!(matches!(Batch::new().put_settlement(&huge), Err(Error::Inconsistent(_))));
    }

    anchor_sets_read_back_by_any_epoch_of_their_range_and_must_rebuild_their_root(store) {
        let leaf = |region: u64, epoch: u64| AnchorLeaf {
            region: Region(region),
            epoch,
            summary_hash: Hash32([epoch as u8; 32]),
            reports_root: Hash32([1; 32]),
            rewards_root: Hash32([2; 32]),
            energy_root: Hash32([3; 32]),
        };
        let leaves = vec![leaf(1, 4), leaf(2, 4), leaf(1, 5), leaf(2, 5)];
        let root = MerkleTree::new(leaves.iter().map(AnchorLeaf::hash)).root();
        let set = AnchorSet { from_epoch: 4, to_epoch: 5, root, leaves };
        assert_eq!(store.latest_anchor_set().expect("latest"), None);
        store.put_anchor_set(&set).expect("put");
        assert_eq!(store.anchor_set_covering(5).expect("get"), Some(set.clone()));
        assert_eq!(store.anchor_set_covering(4).expect("get"), Some(set.clone()));
        assert_eq!(store.anchor_set_covering(3).expect("get"), None);
        assert_eq!(store.anchor_set_covering(6).expect("get"), None);
        assert_eq!(store.latest_anchor_set().expect("latest"), Some(set.clone()));

        let mut wrong_root = set.clone();
        wrong_root.root = Hash32([9; 32]);
        assert!(matches!(Batch::new().put_anchor_set(&wrong_root), Err(Error::Inconsistent(_))));
        let mut outside = set.clone();
        outside.to_epoch = 4;
        assert!(matches!(Batch::new().put_anchor_set(&outside), Err(Error::Inconsistent(_))));
        let mut huge = set;
        huge.leaves = vec![leaf(1, 4); meshd_storage::record::ANCHOR_SET_MAX_LEAVES + 1];
        assert!(matches!(Batch::new().put_anchor_set(&huge), Err(Error::Inconsistent(_))));
    }

    summaries_read_back_and_latest_is_the_highest_epoch(store) {
        for epoch in [3, 10, 7] {
            store.put_summary(&finalized(REGION, epoch)).expect("put");
        }
        store.put_summary(&finalized(Region(REGION.0 + 1), 11)).expect("put");
        assert_eq!(store.summary(REGION, 7).expect("get"), Some(finalized(REGION, 7)));
        assert_eq!(store.summary(REGION, 8).expect("get"), None);
        assert_eq!(store.latest_summary(REGION).expect("latest"), Some(finalized(REGION, 10)));
        assert_eq!(store.latest_summary(Region(1)).expect("latest"), None);
    }

    a_certificate_for_another_summary_is_refused(store) {
        let mut record = finalized(REGION, 3);
        record.certificate.summary = Hash32([0xee; 32]);
        assert!(matches!(store.put_summary(&record), Err(Error::Inconsistent(_))));
        let mut record = finalized(REGION, 3);
        record.certificate.epoch = 4;
        assert!(matches!(store.put_summary(&record), Err(Error::Inconsistent(_))));
        assert_eq!(store.summary(REGION, 3).expect("get"), None);
    }

    a_second_vote_for_the_same_step_returns_the_first(store) {
        let key = VoteKey { region: REGION, epoch: 8, round: 0, step: Step::Prevote };
        assert_eq!(store.record_vote(&key, b"vote for A").expect("record"), VoteOutcome::Recorded);
        assert_eq!(store.record_vote(&key, b"vote for A").expect("record"), VoteOutcome::AlreadyRecorded);
        assert_eq!(
            store.record_vote(&key, b"vote for B").expect("record"),
            VoteOutcome::Conflict(b"vote for A".to_vec())
        );
        assert_eq!(store.vote(&key).expect("get"), Some(b"vote for A".to_vec()));
        let next_step = VoteKey { step: Step::Precommit, ..key };
        assert_eq!(store.record_vote(&next_step, b"vote for B").expect("record"), VoteOutcome::Recorded);
    }

    votes_are_listed_by_round_then_step(store) {
        let at = |round, step| VoteKey { region: REGION, epoch: 8, round, step };
        for (round, step) in [(1, Step::Precommit), (0, Step::Prevote), (1, Step::Propose), (0, Step::Precommit)] {
            store.record_vote(&at(round, step), &[round as u8, step as u8]).expect("record");
        }
        store.record_vote(&VoteKey { epoch: 9, ..at(0, Step::Prevote) }, b"other epoch").expect("record");
        let listed: Vec<VoteKey> = store.votes(REGION, 8).expect("list").into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            listed,
            [at(0, Step::Prevote), at(0, Step::Precommit), at(1, Step::Propose), at(1, Step::Precommit)]
        );
    }

    the_anchor_covering_an_epoch_is_found(store) {
        let anchor = |start, end| AnchorRecord {
            start_epoch: start,
            end_epoch: end,
            root: Hash32([start as u8; 32]),
            tx_hash: None,
            block_number: None,
        };
        for (start, end) in [(0, 4), (4, 8), (12, 16)] {
            store.put_anchor(&anchor(start, end)).expect("put");
        }
        assert_eq!(store.anchor_covering(0).expect("find"), Some(anchor(0, 4)));
        assert_eq!(store.anchor_covering(7).expect("find"), Some(anchor(4, 8)));
        assert_eq!(store.anchor_covering(9).expect("find"), None);
        assert_eq!(store.anchor_covering(15).expect("find"), Some(anchor(12, 16)));
        assert_eq!(store.anchor_covering(16).expect("find"), None);
        assert_eq!(store.anchor(4, 8).expect("get"), Some(anchor(4, 8)));
        assert_eq!(store.anchors(4, 10).expect("list"), [anchor(4, 8), anchor(12, 16)]);
        let confirmed = AnchorRecord { tx_hash: Some(Hash32([1; 32])), block_number: Some(77), ..anchor(4, 8) };
        store.put_anchor(&confirmed).expect("update");
        assert_eq!(store.anchor_covering(5).expect("find"), Some(confirmed));
        assert!(matches!(store.put_anchor(&anchor(5, 5)), Err(Error::Inconsistent(_))));
    }

    damaged_records_are_typed_errors_naming_tree_and_key(store) {
        let meter = MeterId([1; 32]);
        store.put(Tree::Meters, &key::meter(&meter), b"not a meter state").expect("raw put");
        match store.meter_state(&meter) {
            Err(Error::BadRecord { tree: Tree::Meters, key, .. }) => assert!(key.starts_with("0x0101")),
            other => panic!("expected a bad record error, got {other:?}"),
        }
        store.put(Tree::Reports, &key::report(REGION, 1, &Hash32::ZERO), &[1, 2, 0xff]).expect("raw put");
        assert!(matches!(store.reports(REGION, 1), Err(Error::BadRecord { tree: Tree::Reports, .. })));
        store.put(Tree::Summaries, &key::region_epoch(REGION, 1), &[0xff; 300]).expect("raw put");
        assert!(matches!(store.summary(REGION, 1), Err(Error::BadRecord { .. })));
        assert!(matches!(store.latest_summary(REGION), Err(Error::BadRecord { .. })));
        let mut bad_vote_key = key::region_epoch(REGION, 2).to_vec();
        bad_vote_key.extend_from_slice(&[0, 0, 0, 0, 9]);
        store.put(Tree::Votes, &bad_vote_key, b"vote").expect("raw put");
        assert!(matches!(store.votes(REGION, 2), Err(Error::BadKey { tree: Tree::Votes, .. })));
        let message = store.meter_state(&meter).expect_err("damaged").to_string();
        assert!(message.contains("meters") && message.contains("restore"), "{message}");
    }

    a_batch_across_trees_lands_together(store) {
        let meter = MeterId([2; 32]);
        let mut batch = Batch::new();
        let id = batch.put_report(REGION, 1, &witness(1, 1)).expect("encode");
        batch.put_meter_state(&meter, &MeterState { last_sequence: 9, ..MeterState::default() }).expect("encode");
        batch.put_summary(&finalized(REGION, 1)).expect("encode");
        batch.put(Tree::Meta, b"note", b"hello").delete(Tree::Meta, b"note").put(Tree::Meta, b"note", b"last");
        store.apply(&batch).expect("apply");
        assert!(store.report(REGION, 1, &id).expect("get").is_some());
        assert_eq!(store.meter_state(&meter).expect("get").map(|s| s.last_sequence), Some(9));
        assert!(store.summary(REGION, 1).expect("get").is_some());
        assert_eq!(store.get(Tree::Meta, b"note").expect("get"), Some(b"last".to_vec()));
    }

    scans_honour_bounds_direction_and_limit(store) {
        for k in [[1u8], [2], [3], [4]] {
            store.put(Tree::Meta, &k, &k).expect("put");
        }
        let keys = |scan: Scan| -> Vec<Vec<u8>> {
            store.scan(Tree::Meta, &scan).expect("scan").into_iter().map(|(k, _)| k).collect()
        };
        let range = Scan::range(Bound::Excluded(vec![1]), Bound::Included(vec![4]));
        assert_eq!(keys(range.clone()), [[2], [3], [4]]);
        assert_eq!(keys(range.clone().reverse().limit(2)), [[4], [3]]);
        assert_eq!(keys(range.limit(0)), Vec::<Vec<u8>>::new());
        let inverted = Scan::range(Bound::Included(vec![3]), Bound::Excluded(vec![2]));
        assert!(keys(inverted).is_empty());
    }
}

#[test]
fn memory_restart_keeps_everything_and_checks_the_schema_again() {
    let store = MemoryStore::new();
    assert!(store.is_new());
    let id = store.put_report(REGION, 1, &witness(1, 1)).expect("put");
    let store = store.restart().expect("restart");
    assert!(!store.is_new());
    assert!(store.report(REGION, 1, &id).expect("get").is_some());
    store.put(Tree::Meta, key::SCHEMA_VERSION_KEY, &encode_version(SCHEMA_VERSION + 1)).expect("raw put");
    assert!(matches!(store.restart(), Err(Error::SchemaTooNew { .. })));
}

#[test]
fn sled_data_and_votes_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let key = VoteKey { region: REGION, epoch: 1, round: 2, step: Step::Precommit };
    let id = {
        let store = SledStore::open(dir.path(), Options::default()).expect("open");
        assert!(store.is_new());
        assert_eq!(store.record_vote(&key, b"A").expect("record"), VoteOutcome::Recorded);
        store.put_report(REGION, 1, &witness(1, 1)).expect("put")
    };
    let store = SledStore::open(dir.path(), Options::default()).expect("reopen");
    assert!(!store.is_new());
    assert_eq!(store.record_vote(&key, b"B").expect("record"), VoteOutcome::Conflict(b"A".to_vec()));
    assert_eq!(store.report(REGION, 1, &id).expect("get"), Some(witness(1, 1)));
}

#[test]
fn a_store_from_a_newer_build_is_refused_naming_both_versions_and_the_fix() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    {
        let store = SledStore::open(dir.path(), Options::default()).expect("open");
        store.put(Tree::Meta, key::SCHEMA_VERSION_KEY, &encode_version(SCHEMA_VERSION + 6)).expect("raw put");
    }
    let error = SledStore::open(dir.path(), Options::default()).expect_err("refused");
    assert!(
        matches!(error, Error::SchemaTooNew { found, supported, .. } if found == SCHEMA_VERSION + 6 && supported == SCHEMA_VERSION)
    );
    let message = error.to_string();
    assert!(message.contains(&format!("schema version {}", SCHEMA_VERSION + 6)), "{message}");
    assert!(message.contains(&format!("schema version {SCHEMA_VERSION}")), "{message}");
    assert!(message.contains(&dir.path().display().to_string()), "{message}");
    assert!(message.contains("newer meshd"), "{message}");
}

#[test]
fn a_store_of_an_unknown_older_version_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    {
        let store = SledStore::open(dir.path(), Options::default()).expect("open");
        store.put(Tree::Meta, key::SCHEMA_VERSION_KEY, &encode_version(0)).expect("raw put");
    }
    let error = SledStore::open(dir.path(), Options::default()).expect_err("refused");
    assert!(matches!(error, Error::SchemaTooOld { found: 0, .. }), "{error}");
}

#[test]
fn a_store_with_data_but_no_schema_version_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    {
        let store = SledStore::open(dir.path(), Options::default()).expect("open");
        store.put(Tree::Meters, &[1; 32], b"something").expect("raw put");
        store.delete(Tree::Meta, key::SCHEMA_VERSION_KEY).expect("raw delete");
    }
    let error = SledStore::open(dir.path(), Options::default()).expect_err("refused");
    assert!(matches!(error, Error::SchemaMissing { .. }), "{error}");
}

#[test]
fn a_damaged_schema_version_is_a_typed_error() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    {
        let store = SledStore::open(dir.path(), Options::default()).expect("open");
        store.put(Tree::Meta, key::SCHEMA_VERSION_KEY, b"v1").expect("raw put");
    }
    let error = SledStore::open(dir.path(), Options::default()).expect_err("refused");
    assert!(matches!(error, Error::BadRecord { tree: Tree::Meta, .. }), "{error}");
}

#[test]
fn a_second_open_of_the_same_directory_fails_with_locked() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let first = SledStore::open(dir.path(), Options::default()).expect("open");
    let error = SledStore::open(dir.path(), Options::default()).expect_err("locked");
    assert!(matches!(error, Error::Locked { .. }), "{error}");
    assert!(error.to_string().contains("another process"), "{error}");
    drop(first);
    SledStore::open(dir.path(), Options::default()).expect("open once the first is dropped");
}

#[test]
fn a_directory_that_cannot_be_created_is_a_permission_or_io_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").expect("write");
    let path = file.join("store");
    let error = SledStore::open(&path, Options::default()).expect_err("cannot create");
    assert!(matches!(error, Error::Io { .. } | Error::PermissionDenied { .. }), "{error}");
    assert!(error.to_string().contains(&path.display().to_string()), "{error}");
}

#[test]
fn an_unwritable_directory_is_permission_denied_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("store");
    std::fs::create_dir(&path).expect("create");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o500)).expect("chmod");
    if std::fs::write(path.join("probe"), b"").is_ok() {
        // Running as root (or with CAP_DAC_OVERRIDE): permissions are not enforced.
        eprintln!("skipped: this user can write to read-only directories");
        return;
    }
    let error = SledStore::open(&path, Options::default()).expect_err("denied");
    assert!(matches!(error, Error::PermissionDenied { .. }), "{error}");
    assert!(error.to_string().contains("chown"), "{error}");
}

#[test]
fn on_flush_writes_are_visible_at_once_and_kept_after_a_clean_reopen() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let options = Options { durability: meshd_storage::Durability::OnFlush, ..Options::default() };
    {
        let store = SledStore::open(dir.path(), options.clone()).expect("open");
        store.put(Tree::Meta, b"k", b"v").expect("put");
        assert_eq!(store.get(Tree::Meta, b"k").expect("get"), Some(b"v".to_vec()));
        store.flush().expect("flush");
    }
    let store = SledStore::open(dir.path(), options).expect("reopen");
    assert_eq!(store.get(Tree::Meta, b"k").expect("get"), Some(b"v".to_vec()));
}

#[test]
fn a_value_too_large_for_sleds_log_survives_a_reopen() {
    // sled 0.34 keeps values over a quarter of its 512 KiB segment in blob
    // files, which this backend fsyncs itself.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let large: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
    {
        let store = SledStore::open(dir.path(), Options::default()).expect("open");
        store.put(Tree::Meta, b"large", &large).expect("put");
        let blobs = std::fs::read_dir(dir.path().join("blobs")).expect("list blobs").count();
        assert!(blobs > 0, "expected the value in a blob file");
    }
    let store = SledStore::open(dir.path(), Options::default()).expect("reopen");
    assert_eq!(store.get(Tree::Meta, b"large").expect("get"), Some(large));
}
