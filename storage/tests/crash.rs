//! Crash test: acknowledged writes survive SIGKILL.
//!
//! The test re-executes its own binary as a writer process (the test
//! [`writer_process_of_the_crash_test`], which does nothing unless
//! `MESHD_STORAGE_CRASH_CHILD` names a directory). The writer opens a sled
//! store there with [`Durability::EveryWrite`] and writes record after record
//! — a report and its meter's state in one batch, and every third record a
//! vote — printing `ack N` once record `N` is acknowledged. The parent kills it
//! with SIGKILL after a random number of acknowledgements plus a random pause,
//! [`KILLS`] times, and after each kill reopens the store and checks that:
//!
//! - the store opens and its schema version is the current one;
//! - every acknowledged record is there, byte for byte;
//! - nothing else is there but whole records the writer had started, and each
//!   batch landed whole (a report is never newer than its meter's state).
//!
//! The seed is printed; rerun a failure with `MESHD_CRASH_SEED=<seed>`.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use meshd_protocol::MeterId;
use meshd_protocol::envelope::Envelope;
use meshd_storage::key::{Step, VoteKey};
use meshd_storage::{
    Batch, Durability, MeterState, Options, SCHEMA_VERSION, Scan, SledStore, Store, StoreExt, Tree,
    VoteOutcome,
};
use support::REGION;

/// Kills per run: the brief's minimum of 50; each costs a process start and a
/// store recovery, about 0.1 s in a debug build.
const KILLS: u32 = 50;

/// The most acknowledgements to wait for before a kill. The store grows across
/// kills (about 20 records per kill on average), so later kills recover a
/// store of a few hundred batches.
const MAX_ACKS_BEFORE_KILL: u64 = 40;

/// The longest pause between the awaited acknowledgement and the kill, in µs.
/// A durable write takes from a few hundred µs to a few ms here, so the kill
/// lands anywhere in the next few writes, including inside a flush.
const MAX_PAUSE_US: u64 = 3_000;

/// Seed used when `MESHD_CRASH_SEED` is not set, so that CI runs a fixed seed.
const DEFAULT_SEED: u64 = 0x6d65_7368_6421;

/// Meters the writer cycles through: few, so each meter's state is
/// overwritten often and a torn batch would show.
const METERS: u64 = 5;

/// Records per epoch, so that reports spread over several epochs.
const RECORDS_PER_EPOCH: u64 = 16;

/// How far past the last acknowledgement the writer can have got before the
/// kill: one record started and not acknowledged.
const UNACKNOWLEDGED_WINDOW: u64 = 1;

/// Names the store directory, and makes this binary a writer process.
const CHILD_ENV: &str = "MESHD_STORAGE_CRASH_CHILD";
/// The first record the writer writes: the count acknowledged so far.
const START_ENV: &str = "MESHD_STORAGE_CRASH_START";
/// Overrides [`DEFAULT_SEED`].
const SEED_ENV: &str = "MESHD_CRASH_SEED";
/// The signal `Child::kill` sends on Unix.
const SIGKILL: i32 = 9;

/// The writer's record `i`, fully determined by `i`.
struct Record {
    epoch: u64,
    report: Envelope,
    meter: MeterId,
    state: MeterState,
    vote: Option<(VoteKey, Vec<u8>)>,
}

fn record(i: u64) -> Record {
    let epoch = i / RECORDS_PER_EPOCH;
    let report = support::witness(epoch, u32::try_from(i).expect("fewer than 2^32 records"));
    let meter = MeterId([(i % METERS) as u8; 32]);
    let state = MeterState {
        last_sequence: i,
        last_interval_end_s: 1_750_000_000 + i * 900,
        last_register_wh: i * 1_234,
        carried_wh: (i * 1_234) % 1_000_000,
    };
    let vote = i.is_multiple_of(3).then(|| {
        let key = VoteKey { region: REGION, epoch: i, round: 0, step: Step::Prevote };
        let mut bytes = vec![(i % 251) as u8; 96];
        bytes[..8].copy_from_slice(&i.to_le_bytes());
        (key, bytes)
    });
    Record { epoch, report, meter, state, vote }
}

/// Not a test on its own: the writer process of
/// [`acknowledged_writes_survive_sigkill_at_random_moments`]. Does nothing
/// unless `MESHD_STORAGE_CRASH_CHILD` is set.
#[test]
fn writer_process_of_the_crash_test() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let start: u64 = std::env::var(START_ENV).ok().and_then(|s| s.parse().ok()).expect("start index");
    let options = Options { durability: Durability::EveryWrite, ..Options::default() };
    let store = SledStore::open(&dir, options).expect("the writer opens the store");
    let mut stdout = std::io::stdout().lock();
    // Ends libtest's unfinished "test writer_process_of_the_crash_test ... "
    // line, so that each acknowledgement starts a line of its own.
    writeln!(stdout).expect("write to stdout");
    // Bounded so that a parent that fails to kill does not leave it running.
    for i in start..start + 100_000 {
        let record = record(i);
        let mut batch = Batch::new();
        batch.put_report(REGION, record.epoch, &record.report).expect("encode");
        batch.put_meter_state(&record.meter, &record.state).expect("encode");
        store.apply(&batch).expect("apply");
        if let Some((key, bytes)) = &record.vote {
            // A record started before the last kill may have its vote already.
            match store.record_vote(key, bytes).expect("record vote") {
                VoteOutcome::Recorded | VoteOutcome::AlreadyRecorded => {}
                VoteOutcome::Conflict(_) => panic!("record {i}: another vote is recorded for {key:?}"),
            }
        }
        writeln!(stdout, "ack {i}").and_then(|()| stdout.flush()).expect("report the acknowledgement");
    }
}

/// SplitMix64: a tiny seeded generator for the kill schedule.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % bound
    }
}

#[test]
fn acknowledged_writes_survive_sigkill_at_random_moments() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let seed = std::env::var(SEED_ENV).ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_SEED);
    println!("crash test seed {seed} (rerun with {SEED_ENV}={seed})");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut records = Records::default();
    let mut acknowledged = 0u64;

    for kill in 0..KILLS {
        let wait_for = rng.below(MAX_ACKS_BEFORE_KILL + 1);
        let pause = Duration::from_micros(rng.below(MAX_PAUSE_US + 1));
        let mut child = Command::new(&exe)
            .args(["--exact", "writer_process_of_the_crash_test", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, dir.path())
            .env(START_ENV, acknowledged.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the writer");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut acks = 0u64;
        let take_ack = |line: String, acks: &mut u64| {
            if let Some(n) = line.strip_prefix("ack ").and_then(|n| n.parse::<u64>().ok()) {
                assert_eq!(
                    n,
                    acknowledged + *acks,
                    "seed {seed}, kill {kill}: acknowledgements out of order"
                );
                *acks += 1;
            }
        };
        while acks < wait_for {
            match lines.next() {
                Some(Ok(line)) => take_ack(line, &mut acks),
                _ => break,
            }
        }
        std::thread::sleep(pause);
        child.kill().expect("SIGKILL the writer");
        // Every acknowledgement printed before the kill counts, read or not.
        for line in lines.map_while(Result::ok) {
            take_ack(line, &mut acks);
        }
        let status = child.wait().expect("reap the writer");
        if status.signal() != Some(SIGKILL) {
            let mut stderr = String::new();
            let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut stderr));
            panic!("seed {seed}, kill {kill}: the writer exited by itself ({status}):\n{stderr}");
        }
        acknowledged += acks;
        check_store(dir.path(), acknowledged, &mut records)
            .unwrap_or_else(|e| panic!("seed {seed}, kill {kill} after {acknowledged} acknowledged: {e}"));
    }
    println!("{KILLS} kills, {acknowledged} acknowledged records, all intact");
}

/// The writer's records, computed once each (sealing signs).
#[derive(Default)]
struct Records(Vec<Record>);

impl Records {
    fn get(&mut self, i: u64) -> &Record {
        while self.0.len() as u64 <= i {
            self.0.push(record(self.0.len() as u64));
        }
        &self.0[i as usize]
    }
}

fn check_store(dir: &Path, acknowledged: u64, records: &mut Records) -> Result<(), String> {
    let store = SledStore::open(dir, Options::default()).map_err(|e| format!("reopen: {e}"))?;
    match store.schema_version() {
        Ok(Some(SCHEMA_VERSION)) => {}
        other => return Err(format!("schema version after recovery: {other:?}")),
    }

    // Reports: all acknowledged ones, plus at most the one in flight.
    let mut present = BTreeMap::new();
    for (key, bytes) in store.scan(Tree::Reports, &Scan::all()).map_err(|e| e.to_string())? {
        present.insert(key, bytes);
    }
    let mut newest = None;
    for i in 0..acknowledged + UNACKNOWLEDGED_WINDOW {
        let record = records.get(i);
        let id = record.report.id().map_err(|e| e.to_string())?;
        let found = store.report(REGION, record.epoch, &id).map_err(|e| format!("report {i}: {e}"))?;
        match found {
            Some(envelope) if envelope == record.report => {
                newest = Some(i);
                present.remove(meshd_storage::key::report(REGION, record.epoch, &id).as_slice());
            }
            Some(_) => return Err(format!("report {i} is damaged")),
            None if i < acknowledged => return Err(format!("acknowledged report {i} is missing")),
            None => {}
        }
    }
    if !present.is_empty() {
        return Err(format!("{} reports that the writer never started", present.len()));
    }

    // Meter states: each batch landed whole, so every meter's state is the
    // one of its newest record that landed.
    for m in 0..METERS {
        let meter = MeterId([m as u8; 32]);
        let state = store.meter_state(&meter).map_err(|e| format!("meter {m}: {e}"))?;
        let expected_newest = newest.and_then(|newest| (0..=newest).rev().find(|i| i % METERS == m));
        match (state, expected_newest) {
            (None, None) => {}
            (Some(state), Some(i)) if state == records.get(i).state => {}
            (state, i) => {
                return Err(format!(
                    "meter {m}: state {state:?}, but its newest stored report is record {i:?} (a torn batch)"
                ));
            }
        }
    }

    // Votes: every acknowledged one, intact.
    for i in 0..acknowledged {
        if let Some((key, bytes)) = &records.get(i).vote {
            let found = store.vote(key).map_err(|e| format!("vote {i}: {e}"))?;
            if found.as_ref() != Some(bytes) {
                return Err(format!("acknowledged vote {i} is {found:?}"));
            }
        }
    }
    Ok(())
}
