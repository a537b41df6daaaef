//! sled report-write throughput, and bytes on disk per report.
//!
//! Run with `cargo bench -p meshd-storage`. Records are real signed envelopes
//! (witness and beacon reports, about 185 bytes each, keyed by region, epoch
//! and id as the node stores them). Measured:
//!
//! - `one_by_one_durable`: one `put_report` per record with
//!   [`Durability::EveryWrite`] — a flush and fsync per record;
//! - `batch_N_durable`: `N` records in one atomic [`Batch`], one fsync per batch;
//! - `one_by_one_on_flush`: one `put_report` per record with
//!   [`Durability::OnFlush`] and no flush, the cost without the fsync.
//!
//! Before the timings it writes [`DISK_RECORDS`] records to a fresh store and
//! prints the size of the directory per record.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput};
use meshd_protocol::Hash32;
use meshd_protocol::envelope::{Domain, Envelope};
use meshd_protocol::geo::{Location, Region};
use meshd_protocol::keys::Keypair;
use meshd_protocol::message::{BeaconId, BeaconReport, DataRate, Message, WitnessReport};
use meshd_storage::{Batch, Durability, Options, SledStore, Store, StoreExt};

/// The region every record goes to.
const REGION: Region = Region(0x8528_3473_ffff_ffff);

/// Distinct envelopes prepared before timing (sealing signs, which must not
/// be timed). Keys stay distinct beyond it because the epoch advances each
/// time the pool is reused.
const POOL: usize = 4_096;

/// Records written for the disk-usage figure: 50,000 is about a busy region's
/// day of witness reports, enough for sled's fixed per-segment overhead to
/// average out.
const DISK_RECORDS: usize = 50_000;

/// Records per batch when writing the disk-usage store: the batch size a node
/// would use for a burst of gossip.
const DISK_BATCH: usize = 1_000;

fn pool() -> Vec<Envelope> {
    let domain = Domain::new("meshd-bench");
    (0..POOL as u32)
        .map(|n| {
            let mut secret = [0x42; 32];
            secret[..4].copy_from_slice(&n.to_le_bytes());
            let key = Keypair::from_secret(secret);
            let datarate = DataRate { spreading_factor: 7, bandwidth_khz: 125 };
            let message = if n % 2 == 0 {
                Message::WitnessReport(WitnessReport {
                    region: REGION,
                    epoch: 1,
                    beacon_id: BeaconId([(n / 8) as u8; 16]),
                    location: Location(0x8c28_3473_0000_0fff),
                    antenna_gain_ddbi: 30,
                    rssi_ddbm: -1_100,
                    snr_ddb: 45,
                    frequency_hz: 868_100_000,
                    datarate,
                    received_at_ms: 1_750_000_000_000 + u64::from(n),
                    tmst_us: n,
                })
            } else {
                Message::BeaconReport(BeaconReport {
                    region: REGION,
                    epoch: 1,
                    location: Location(0x8c28_3473_0000_0fff),
                    antenna_gain_ddbi: 30,
                    tx_power_ddbm: 270,
                    frequency_hz: 868_300_000,
                    datarate,
                    entropy: Hash32([7; 32]),
                    beacon_id: BeaconId([(n / 8) as u8; 16]),
                    transmitted_at_ms: 1_750_000_000_000 + u64::from(n),
                })
            };
            Envelope::seal(&domain, &key, &message).expect("a report encodes")
        })
        .collect()
}

/// Cycles through the pool, moving to the next epoch at each wrap so that
/// every record gets a key of its own.
struct Feed<'a> {
    pool: &'a [Envelope],
    next: usize,
}

impl<'a> Feed<'a> {
    fn next(&mut self) -> (u64, &'a Envelope) {
        let i = self.next;
        self.next += 1;
        ((i / self.pool.len()) as u64, &self.pool[i % self.pool.len()])
    }
}

fn open(dir: &Path, durability: Durability) -> SledStore {
    SledStore::open(dir, Options { durability, ..Options::default() }).expect("open the store")
}

/// (apparent bytes, allocated bytes) of the files under `dir`.
fn directory_size(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut total = (0, 0);
    for entry in std::fs::read_dir(dir).expect("list the store").flatten() {
        let meta = entry.metadata().expect("stat");
        if meta.is_dir() {
            let (apparent, allocated) = directory_size(&entry.path());
            total = (total.0 + apparent, total.1 + allocated);
        } else {
            total = (total.0 + meta.len(), total.1 + meta.blocks() * 512);
        }
    }
    total
}

fn report_disk_usage(pool: &[Envelope]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut feed = Feed { pool, next: 0 };
    let mut payload = 0usize;
    {
        let store = open(dir.path(), Durability::EveryWrite);
        for _ in 0..DISK_RECORDS / DISK_BATCH {
            let mut batch = Batch::new();
            for _ in 0..DISK_BATCH {
                let (epoch, envelope) = feed.next();
                batch.put_report(REGION, epoch, envelope).expect("encode");
            }
            payload += batch
                .writes()
                .iter()
                .map(|w| match w {
                    meshd_storage::Write::Put { key, value, .. } => key.len() + value.len(),
                    meshd_storage::Write::Delete { key, .. } => key.len(),
                })
                .sum::<usize>();
            store.apply(&batch).expect("write");
        }
        let (apparent, allocated) = directory_size(dir.path());
        let sled = store.size_on_disk().expect("size");
        println!(
            "disk usage after {DISK_RECORDS} reports (key + envelope = {:.0} bytes each): \
             {:.0} bytes/record apparent, {:.0} allocated, sled reports {:.0}",
            payload as f64 / DISK_RECORDS as f64,
            apparent as f64 / DISK_RECORDS as f64,
            allocated as f64 / DISK_RECORDS as f64,
            sled as f64 / DISK_RECORDS as f64,
        );
    }
    let (apparent, allocated) = directory_size(dir.path());
    println!(
        "  after closing the store: {:.0} bytes/record apparent, {:.0} allocated",
        apparent as f64 / DISK_RECORDS as f64,
        allocated as f64 / DISK_RECORDS as f64,
    );
}

fn write_throughput(criterion: &mut Criterion, pool: &[Envelope]) {
    let mut group = criterion.benchmark_group("sled_report_write");

    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = open(dir.path(), Durability::EveryWrite);
    let mut feed = Feed { pool, next: 0 };
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_by_one_durable", |b| {
        b.iter(|| {
            let (epoch, envelope) = feed.next();
            black_box(store.put_report(REGION, epoch, envelope).expect("write"))
        })
    });

    for size in [100u64, 1_000] {
        group.throughput(Throughput::Elements(size));
        group.bench_function(format!("batch_{size}_durable"), |b| {
            b.iter_batched(
                || {
                    let mut batch = Batch::new();
                    for _ in 0..size {
                        let (epoch, envelope) = feed.next();
                        batch.put_report(REGION, epoch, envelope).expect("encode");
                    }
                    batch
                },
                |batch| store.apply(&batch).expect("write"),
                BatchSize::LargeInput,
            )
        });
    }
    drop(store);

    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = open(dir.path(), Durability::OnFlush);
    let mut feed = Feed { pool, next: 0 };
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_by_one_on_flush", |b| {
        b.iter(|| {
            let (epoch, envelope) = feed.next();
            black_box(store.put_report(REGION, epoch, envelope).expect("write"))
        })
    });
    group.finish();
}

fn main() {
    let pool = pool();
    let mean =
        pool.iter().map(|e| meshd_protocol::codec::encode_envelope(e).map_or(0, |b| b.len())).sum::<usize>()
            / pool.len();
    println!("report envelopes: {mean} bytes on average");
    report_disk_usage(&pool);
    // Short runs by default (about 20 s in all); criterion's command-line
    // options (e.g. `--measurement-time 10`) override them.
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    write_throughput(&mut criterion, &pool);
    criterion.final_summary();
}
