//! ed25519 verification throughput: one signature at a time, and batches of
//! 64 and 256, all through meshd's verdict functions (`signature::verify_raw`
//! and `signature::verify_batch`), on envelope-sized messages.
//!
//! Run: `cargo bench -p meshd-protocol --bench verify`. Throughput is printed
//! as signatures per second (criterion's "elements").

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use meshd_protocol::keys::Keypair;
use meshd_protocol::signature::{self, Item};

/// Signed bytes of a typical witness-report envelope are ~110 bytes.
const MESSAGE_LEN: usize = 110;

/// Public keys, messages and signatures of `n` distinct signers.
type Fixtures = (Vec<[u8; 32]>, Vec<Vec<u8>>, Vec<[u8; 64]>);

fn fixtures(n: usize) -> Fixtures {
    let keys: Vec<Keypair> = (0..n).map(|i| Keypair::from_secret([(i % 251) as u8 + 1; 32])).collect();
    let messages: Vec<Vec<u8>> = (0..n).map(|i| vec![(i % 256) as u8; MESSAGE_LEN]).collect();
    let signatures = keys.iter().zip(&messages).map(|(k, m)| k.sign(m)).collect();
    (keys.iter().map(Keypair::public_bytes).collect(), messages, signatures)
}

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("ed25519_verify");
    let (publics, messages, signatures) = fixtures(1);
    group.throughput(Throughput::Elements(1));
    group.bench_function("single", |b| {
        b.iter(|| signature::verify_raw(&publics[0], &messages[0], &signatures[0]).is_ok())
    });
    for size in [64usize, 256] {
        let (publics, messages, signatures) = fixtures(size);
        let items: Vec<Item<'_>> = (0..size)
            .map(|i| Item { signer: &publics[i], message: &messages[i], signature: &signatures[i] })
            .collect();
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(BenchmarkId::new("batch", size), &items, |b, items| {
            b.iter(|| signature::verify_batch(items).iter().all(Result::is_ok))
        });
    }
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
