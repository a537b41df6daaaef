//! One node driven by hand: ordering of persists and sends, the report pool's
//! rules, restart safety.

use meshd_node::committee::Committee;
use meshd_node::pool::{self, Context, Pool, Report};
use meshd_node::sim::{GENESIS_MS, Member, NETWORK, network};
use meshd_node::{Heard, Input, Node, Output, Record, Request, Response, Status, Stored, Topic};
use meshd_protocol::codec;
use meshd_protocol::envelope::{Domain, Envelope};
use meshd_protocol::keys::Keypair;
use meshd_protocol::merkle::{MerkleTree, energy_leaf};
use meshd_protocol::message::{
    BeaconId, Certificate, CommitSignature, DataRate, EpochSummary, Kind, Message, MeterAttestation,
    MeterReading, MeterStatus, VoteStep, WitnessReport,
};
use meshd_protocol::rules::meter;
use meshd_protocol::{GatewayId, Hash32};

fn members() -> Vec<Member> {
    network(4, 7)
}

fn node(members: &[Member], i: usize, stored: Stored, now_ms: u64) -> Node {
    let registry = members.iter().map(|m| m.id).collect();
    Node::new(
        members[i].config.clone(),
        Keypair::from_secret(members[i].key_secret),
        registry,
        stored,
        now_ms,
    )
}

fn drain(node: &mut Node) -> Vec<Output> {
    let mut out = Vec::new();
    loop {
        match node.poll_output() {
            Output::Timeout(_) => return out,
            o => out.push(o),
        }
    }
}

fn witness(members: &[Member], i: usize, epoch: u64, rssi: i16) -> Vec<u8> {
    let report = WitnessReport {
        region: members[i].config.region,
        epoch,
        beacon_id: BeaconId([1; 16]),
        location: members[i].config.radio.location,
        antenna_gain_ddbi: 30,
        rssi_ddbm: rssi,
        snr_ddb: 0,
        frequency_hz: 868_100_000,
        datarate: DataRate { spreading_factor: 7, bandwidth_khz: 125 },
        received_at_ms: GENESIS_MS + 1_000,
        tmst_us: 0,
    };
    let key = Keypair::from_secret(members[i].key_secret);
    let envelope =
        Envelope::seal(&Domain::new(NETWORK), &key, &Message::WitnessReport(report)).expect("seal");
    codec::encode_envelope(&envelope).expect("encode")
}

/// The moment epoch 0 is decided (end of its grace period).
fn decides_at(members: &[Member]) -> u64 {
    members[0].config.clock.decides_at_ms(0).expect("epoch 0")
}

#[test]
fn a_vote_is_sent_only_after_its_persist_is_confirmed() {
    let members = members();
    // Member 1 is not the proposer of epoch 0 round 0; its propose timeout
    // makes it prevote nil.
    let mut n = node(&members, 1, Stored::default(), decides_at(&members));
    n.handle_input(Input::Timeout { now_ms: decides_at(&members) });
    drain(&mut n);
    n.handle_input(Input::Timeout { now_ms: decides_at(&members) + 10_000 });
    let out = drain(&mut n);
    let persist = out.iter().find_map(|o| match o {
        Output::Persist { id, batch } => Some((*id, batch.clone())),
        _ => None,
    });
    let (id, batch) = persist.expect("the prevote is persisted");
    assert!(matches!(batch.as_slice(), [Record::Vote(_)]));
    assert!(
        !out.iter().any(|o| matches!(o, Output::Publish { topic: Topic::Region(_), .. })),
        "nothing is published before the persist is confirmed"
    );
    n.handle_input(Input::Persisted { now_ms: decides_at(&members) + 10_001, id });
    let out = drain(&mut n);
    let Record::Vote(stored) = &batch[0] else { unreachable!() };
    let sent = codec::encode_envelope(stored).expect("encode");
    assert!(out.iter().any(|o| matches!(o, Output::Publish { bytes, .. } if *bytes == sent)));
}

#[test]
fn after_a_restart_the_stored_vote_is_sent_again_and_never_contradicted() {
    let members = members();
    let t = decides_at(&members);
    let mut n = node(&members, 1, Stored::default(), t);
    n.handle_input(Input::Timeout { now_ms: t });
    drain(&mut n);
    n.handle_input(Input::Timeout { now_ms: t + 10_000 });
    let out = drain(&mut n);
    let batch = out
        .iter()
        .find_map(|o| match o {
            Output::Persist { batch, .. } => Some(batch.clone()),
            _ => None,
        })
        .expect("persisted vote");
    // Crash before the vote left; restart from the stored vote.
    let Record::Vote(stored) = &batch[0] else { unreachable!() };
    let mut again = node(&members, 1, Stored { records: batch.clone() }, t + 11_000);
    let out = drain(&mut again);
    let sent = codec::encode_envelope(stored).expect("encode");
    assert!(
        out.iter().any(|o| matches!(o, Output::Publish { bytes, .. } if *bytes == sent)),
        "resent as stored"
    );
    let mut out = Vec::new();
    for k in 0..20 {
        again.handle_input(Input::Timeout { now_ms: t + 11_000 + k * 2_000 });
        out.extend(drain(&mut again));
    }
    for o in out {
        if let Output::Persist { batch, .. } = o {
            for r in batch {
                if let Record::Vote(e) = r
                    && let Ok(Message::Vote(v)) = e.open()
                {
                    assert!(
                        !(v.epoch == 0 && v.round == 0 && v.step == VoteStep::Prevote),
                        "round 0's prevote is never signed again"
                    );
                }
            }
        }
    }
}

#[test]
fn a_duplicate_report_is_dropped_before_its_signature_is_verified() {
    let members = members();
    let mut n = node(&members, 0, Stored::default(), GENESIS_MS + 1_000);
    let bytes = witness(&members, 1, 0, -1100);
    let from = members[1].id;
    n.handle_input(Input::Gossip { now_ms: GENESIS_MS + 1_000, from, bytes: bytes.clone() });
    let verified = n.metrics().signatures_verified;
    n.handle_input(Input::Gossip { now_ms: GENESIS_MS + 1_001, from, bytes });
    assert_eq!(n.metrics().signatures_verified, verified);
    assert_eq!(n.metrics().refused.get("duplicate"), Some(&1));
    assert_eq!(n.metrics().reports_admitted, 1);
}

#[test]
fn a_late_report_is_admitted_in_the_grace_period_and_refused_after_it() {
    let members = members();
    let clock = members[0].config.clock;
    let end = clock.end_ms(0).expect("end");
    let mut n = node(&members, 0, Stored::default(), end + 1);
    n.handle_input(Input::Gossip {
        now_ms: end + 1,
        from: members[1].id,
        bytes: witness(&members, 1, 0, -1100),
    });
    assert_eq!(n.metrics().reports_admitted, 1);
    let late = clock.decides_at_ms(0).expect("decides");
    n.handle_input(Input::Gossip {
        now_ms: late,
        from: members[2].id,
        bytes: witness(&members, 2, 0, -1100),
    });
    assert_eq!(n.metrics().refused.get("too_late"), Some(&1));
}

#[test]
fn a_gateway_cannot_exceed_its_share_of_an_epoch() {
    let members = members();
    let mut n = node(&members, 0, Stored::default(), GENESIS_MS + 1_000);
    let limit = members[0].config.limits.per_gateway;
    for k in 0..limit + 5 {
        let bytes = witness(&members, 1, 0, -1100 - k as i16);
        n.handle_input(Input::Gossip { now_ms: GENESIS_MS + 1_000, from: members[1].id, bytes });
    }
    assert_eq!(n.metrics().reports_admitted, limit as u64);
    assert_eq!(n.metrics().refused.get("gateway_full"), Some(&5));
}

#[test]
fn an_unregistered_signer_is_refused_with_its_reason_code() {
    let members = members();
    let outsider = network(5, 99).pop().expect("member");
    let mut all = members.clone();
    all[1] = Member { config: members[1].config.clone(), ..outsider };
    let mut n = node(&members, 0, Stored::default(), GENESIS_MS + 1_000);
    n.handle_input(Input::Gossip {
        now_ms: GENESIS_MS + 1_000,
        from: all[1].id,
        bytes: witness(&all, 1, 0, -1100),
    });
    assert_eq!(n.metrics().refused.get("unregistered"), Some(&1));
}

#[test]
fn an_epoch_without_a_quorum_shows_as_stalled() {
    let members = members();
    let t = decides_at(&members);
    let mut n = node(&members, 1, Stored::default(), t);
    // Alone: its rounds never reach a quorum; rounds do not advance without
    // 2f+1 precommits, so it stays deciding, then the stall check reports
    // the missing previous epoch for epoch 1.
    for k in 1..200 {
        n.handle_input(Input::Timeout { now_ms: t + k * 1_000 });
        drain(&mut n);
    }
    assert!(matches!(n.status(0), Status::Deciding(_) | Status::Stalled(_)));
    assert!(matches!(n.status(1), Status::Stalled(meshd_node::Stall::WaitingForPrevious)));
}

#[test]
fn a_proposer_restarted_after_persisting_its_proposal_sends_the_same_one_again() {
    let members = members();
    let t = decides_at(&members);
    // Round 0 of epoch 0 is proposed by the committee's first member (sorted by id).
    let proposer = (0..members.len()).min_by_key(|i| members[*i].id).expect("members");
    let mut n = node(&members, proposer, Stored::default(), t);
    n.handle_input(Input::Timeout { now_ms: t });
    let out = drain(&mut n);
    let batch = out
        .iter()
        .find_map(|o| match o {
            Output::Persist { batch, .. } if matches!(batch.as_slice(), [Record::Proposal(_)]) => {
                Some(batch.clone())
            }
            _ => None,
        })
        .expect("the proposal is persisted");
    assert!(
        !out.iter().any(|o| matches!(o, Output::Publish { topic: Topic::Region(_), .. })),
        "the proposal waits for its persist"
    );
    let Record::Proposal(stored) = &batch[0] else { unreachable!() };
    let sent = codec::encode_envelope(stored).expect("encode");
    // Restart before it left; by then the pool holds other reports, yet the
    // same proposal goes out, and no other.
    let mut again = node(&members, proposer, Stored { records: batch.clone() }, t + 100);
    again.handle_input(Input::Gossip {
        now_ms: t + 100,
        from: members[1].id,
        bytes: witness(&members, 1, 1, -1100),
    });
    again.handle_input(Input::Timeout { now_ms: t + 200 });
    let out = drain(&mut again);
    let proposals: Vec<&Vec<u8>> = out
        .iter()
        .filter_map(|o| match o {
            Output::Publish { bytes, .. } => Some(bytes),
            _ => None,
        })
        .filter(|b| {
            codec::decode_envelope(b).is_ok_and(|e| e.kind == meshd_protocol::message::Kind::Proposal)
        })
        .collect();
    assert!(!proposals.is_empty());
    assert!(proposals.iter().all(|b| **b == sent));
    assert!(!out.iter().any(
        |o| matches!(o, Output::Persist { batch, .. } if matches!(batch.as_slice(), [Record::Proposal(_)]))
    ));
}

/// Feeds the node its own wake-ups until `until`, confirming no persist;
/// returns every output.
fn run_until(node: &mut Node, until: u64) -> Vec<Output> {
    let mut out = Vec::new();
    loop {
        match node.poll_output() {
            Output::Timeout(at) if at <= until => node.handle_input(Input::Timeout { now_ms: at }),
            Output::Timeout(_) => return out,
            o => out.push(o),
        }
    }
}

fn stored_report(out: &[Output], kind: Kind) -> Option<(u64, Vec<Record>, Envelope)> {
    out.iter().find_map(|o| match o {
        Output::Persist { id, batch } => match batch.first() {
            Some(Record::Report(e)) if e.kind == kind => Some((*id, batch.clone(), e.clone())),
            _ => None,
        },
        _ => None,
    })
}

fn published(out: &[Output], envelope: &Envelope) -> bool {
    let bytes = codec::encode_envelope(envelope).expect("encode");
    out.iter().any(|o| matches!(o, Output::Publish { bytes: b, .. } if *b == bytes))
}

#[test]
fn a_beacon_is_stored_before_it_is_transmitted_and_a_restart_never_beacons_again() {
    let members = members();
    let end = members[0].config.clock.end_ms(0).expect("end");
    let mut n = node(&members, 0, Stored::default(), GENESIS_MS);
    let out = run_until(&mut n, end - 1);
    let (id, batch, envelope) = stored_report(&out, Kind::BeaconReport).expect("the beacon report is stored");
    assert!(
        !out.iter().any(|o| matches!(o, Output::TransmitBeacon { .. })),
        "not transmitted before durable"
    );
    assert!(!published(&out, &envelope));
    let Ok(Message::BeaconReport(report)) = envelope.open() else { panic!("a beacon report") };
    let t = report.transmitted_at_ms;
    n.handle_input(Input::Persisted { now_ms: t + 1, id });
    let out = drain(&mut n);
    assert!(out.iter().any(
        |o| matches!(o, Output::TransmitBeacon { epoch: 0, beacon_id } if *beacon_id == report.beacon_id)
    ));
    assert!(published(&out, &envelope));

    // Crash after storing it; the restarted node republishes the stored
    // report and neither transmits nor signs another beacon this epoch.
    let mut again = node(&members, 0, Stored { records: batch }, t + 2);
    let first = drain(&mut again);
    assert!(published(&first, &envelope), "the stored report goes out again");
    let rest = run_until(&mut again, end - 1);
    assert!(!rest.iter().chain(&first).any(|o| matches!(o, Output::TransmitBeacon { .. })));
    assert!(stored_report(&rest, Kind::BeaconReport).is_none(), "no second beacon report");
}

#[test]
fn a_witness_report_is_stored_before_it_is_published() {
    let members = members();
    let t = GENESIS_MS + 5_000;
    let mut n = node(&members, 1, Stored::default(), t);
    drain(&mut n);
    let heard = Heard {
        beacon_id: BeaconId([3; 16]),
        rssi_ddbm: -1100,
        snr_ddb: 0,
        frequency_hz: 868_100_000,
        datarate: DataRate { spreading_factor: 7, bandwidth_khz: 125 },
        tmst_us: 0,
    };
    n.handle_input(Input::BeaconHeard { now_ms: t, heard });
    let out = drain(&mut n);
    let (id, batch, envelope) = stored_report(&out, Kind::WitnessReport).expect("stored");
    assert!(!published(&out, &envelope));
    n.handle_input(Input::Persisted { now_ms: t + 1, id });
    assert!(published(&drain(&mut n), &envelope));
    // After the epoch's grace it is not republished on a restart.
    let late = members[1].config.clock.decides_at_ms(0).expect("decides");
    let mut again = node(&members, 1, Stored { records: batch }, late);
    assert!(!published(&drain(&mut again), &envelope));
}

/// Unix seconds of genesis.
const GENESIS_S: u64 = GENESIS_MS / 1_000;
/// Rated capacity of the test meter, W: 10 kW allows 88 Wh in 30 s.
const CAPACITY_W: u64 = 10_000;

fn meter_key() -> Keypair {
    Keypair::from_secret([7; 32])
}

/// A reading of the test meter signed by `key`.
fn reading(key: &Keypair, sequence: u64, start_s: u64, end_s: u64, from_wh: u64, to_wh: u64) -> Envelope {
    let reading = MeterReading {
        meter: meter_key().meter_id(),
        sequence,
        interval_start_s: start_s,
        interval_end_s: end_s,
        register_start_wh: from_wh,
        register_end_wh: to_wh,
        status: MeterStatus::Ok,
    };
    Envelope::seal(&Domain::new(NETWORK), key, &Message::MeterReading(reading)).expect("seal")
}

fn verdict(out: &[Output]) -> Option<(u64, Result<Hash32, meter::Reason>)> {
    out.iter().find_map(|o| match o {
        Output::MeterVerdict { id, result } => Some((*id, *result)),
        _ => None,
    })
}

fn feed(n: &mut Node, now_ms: u64, id: u64, reading: Envelope) -> Vec<Output> {
    n.handle_input(Input::MeterReading { now_ms, id, reading, capacity_w: CAPACITY_W });
    drain(n)
}

#[test]
fn an_accepted_meter_reading_is_attested_after_the_attestation_and_meter_state_are_durable() {
    let members = members();
    let now = (GENESIS_S + 41) * 1_000;
    let mut n = node(&members, 0, Stored::default(), now);
    drain(&mut n);
    let out = feed(&mut n, now, 7, reading(&meter_key(), 1, GENESIS_S + 10, GENESIS_S + 40, 1_000, 1_050));
    assert_eq!(verdict(&out), None, "no verdict before the persist is confirmed");
    let (id, batch) = out
        .iter()
        .find_map(|o| match o {
            Output::Persist { id, batch } => Some((*id, batch.clone())),
            _ => None,
        })
        .expect("persisted");
    let [Record::Report(attestation), Record::Meter { meter, state }] = batch.as_slice() else {
        panic!("attestation and meter state in one batch: {batch:?}")
    };
    assert_eq!(*meter, meter_key().meter_id());
    assert_eq!((state.sequence, state.register_end_wh, state.interval_end_s), (1, 1_050, GENESIS_S + 40));
    let Ok(Message::MeterAttestation(a)) = attestation.open() else { panic!("an attestation") };
    assert_eq!((a.epoch, a.received_at_ms, a.region), (0, now, members[0].config.region));
    assert_eq!(attestation.signer, members[0].id.0);
    assert!(!published(&out, attestation));
    n.handle_input(Input::Persisted { now_ms: now + 1, id });
    let out = drain(&mut n);
    assert!(published(&out, attestation));
    assert_eq!(verdict(&out), Some((7, Ok(attestation.id().expect("id")))));
    assert_eq!(n.metrics().meter_attested, 1);

    // A replay is refused at once, and still after a restart from the store.
    let replay = reading(&meter_key(), 1, GENESIS_S + 10, GENESIS_S + 40, 1_000, 1_050);
    let out = feed(&mut n, now + 2, 8, replay.clone());
    assert_eq!(verdict(&out), Some((8, Err(meter::Reason::SequenceNotIncreasing))));
    assert!(!out.iter().any(|o| matches!(o, Output::Persist { .. })));
    let mut again = node(&members, 0, Stored { records: batch.clone() }, now + 3);
    assert!(published(&drain(&mut again), attestation), "the stored attestation is republished");
    assert_eq!(
        verdict(&feed(&mut again, now + 3, 9, replay)).map(|v| v.1),
        Some(Err(meter::Reason::SequenceNotIncreasing))
    );
    // An overlapping interval under a new sequence is refused too; the next one is attested.
    let overlap = reading(&meter_key(), 2, GENESIS_S + 39, GENESIS_S + 45, 1_050, 1_051);
    assert_eq!(
        verdict(&feed(&mut again, now + 4, 10, overlap)).map(|v| v.1),
        Some(Err(meter::Reason::IntervalOverlap))
    );
    let next = reading(&meter_key(), 2, GENESIS_S + 40, GENESIS_S + 42, 1_050, 1_052);
    let out = feed(&mut again, (GENESIS_S + 43) * 1_000, 11, next);
    assert!(out.iter().any(|o| matches!(o, Output::Persist { .. })));
}

#[test]
fn a_refused_meter_reading_names_the_rule_at_once() {
    let members = members();
    let now = (GENESIS_S + 41) * 1_000;
    let mut n = node(&members, 0, Stored::default(), now);
    drain(&mut n);
    let cases = [
        // 200 Wh in 30 s is far above 10 kW.
        (
            reading(&meter_key(), 1, GENESIS_S + 10, GENESIS_S + 40, 1_000, 1_200),
            meter::Reason::AboveCapacity,
        ),
        // Signed by another key than the meter it names.
        (
            reading(&Keypair::from_secret([8; 32]), 1, GENESIS_S + 10, GENESIS_S + 40, 1_000, 1_001),
            meter::Reason::SignerMismatch,
        ),
        (
            reading(&meter_key(), 1, GENESIS_S + 40, GENESIS_S + 40, 1_000, 1_000),
            meter::Reason::EmptyInterval,
        ),
    ];
    for (k, (envelope, reason)) in cases.into_iter().enumerate() {
        let out = feed(&mut n, now, k as u64, envelope);
        assert_eq!(verdict(&out), Some((k as u64, Err(reason))));
        assert!(!out.iter().any(|o| matches!(o, Output::Persist { .. } | Output::Publish { .. })));
    }
    assert_eq!(n.metrics().meter_refused.get("above_capacity"), Some(&1));
    // An interval of epoch 0 arriving after its grace: its epoch is closed.
    let late = members[0].config.clock.decides_at_ms(0).expect("decides") + 1;
    let envelope = reading(&meter_key(), 1, GENESIS_S + 10, GENESIS_S + 40, 1_000, 1_001);
    assert_eq!(verdict(&feed(&mut n, late, 5, envelope)), Some((5, Err(meter::Reason::EpochClosed))));
    assert_eq!(meter::Reason::EpochClosed.as_str(), "epoch_closed");
}

fn attestation_by(members: &[Member], i: usize, epoch: u64, reading: Envelope) -> Vec<u8> {
    let a = MeterAttestation { region: members[i].config.region, epoch, reading, received_at_ms: GENESIS_MS };
    let key = Keypair::from_secret(members[i].key_secret);
    let envelope = Envelope::seal(&Domain::new(NETWORK), &key, &Message::MeterAttestation(a)).expect("seal");
    codec::encode_envelope(&envelope).expect("encode")
}

#[test]
fn other_gateways_attestations_are_admitted_only_when_consistent() {
    let members = members();
    // In epoch 1, epoch 0 in its grace: both take reports.
    let now = (GENESIS_S + 61) * 1_000;
    let mut n = node(&members, 0, Stored::default(), now);
    let good = reading(&meter_key(), 1, GENESIS_S + 10, GENESIS_S + 40, 1_000, 1_050);
    let from = members[1].id;
    let bytes = attestation_by(&members, 1, 0, good.clone());
    n.handle_input(Input::Gossip { now_ms: now, from, bytes });
    assert_eq!(n.metrics().reports_admitted, 1);
    // The interval ends in epoch 0, the attestation says 1.
    n.handle_input(Input::Gossip { now_ms: now, from, bytes: attestation_by(&members, 1, 1, good) });
    assert_eq!(n.metrics().refused.get("attestation_epoch"), Some(&1));
    // The meter's signature is not the meter's.
    let forged = reading(&Keypair::from_secret([8; 32]), 2, GENESIS_S + 40, GENESIS_S + 41, 1_050, 1_051);
    n.handle_input(Input::Gossip { now_ms: now, from, bytes: attestation_by(&members, 1, 0, forged) });
    assert_eq!(n.metrics().refused.get("signer_mismatch"), Some(&1));
    assert_eq!(n.metrics().reports_admitted, 1);
}

/// The facts of epoch 0 of the members' region, as a member computes them.
fn context(members: &[Member]) -> Context {
    let ids: Vec<GatewayId> = members.iter().map(|m| m.id).collect();
    let config = &members[0].config;
    Context {
        region: config.region,
        epoch: 0,
        previous: Hash32::ZERO,
        committee_hash: Committee::new(ids.iter().copied(), &Hash32::ZERO).hash(),
        registry: ids.iter().copied().collect(),
        members: ids.len(),
        witness: config.witness.clone(),
        rewards: config.rewards,
        limits: config.limits.clone(),
        clock: config.clock,
        meter: config.meter.clone(),
    }
}

#[test]
fn witnesses_never_crowd_out_meter_attestations() {
    let members = members();
    let mut ctx = context(&members);
    // 12 reports an epoch, 4 of them attestations (3 per gateway), and room
    // for 4 beacons: 4 witnesses.
    ctx.limits =
        pool::Limits { per_epoch: 12, per_gateway: 32, attestations: 4, attestations_per_gateway: 3 };
    assert_eq!(ctx.limits.witness_room(members.len()), 4);
    let domain = Domain::new(NETWORK);
    let now = GENESIS_MS + 30_000;
    let mut held = Pool::new();
    let mut offer = |bytes: Vec<u8>| {
        let envelope = codec::decode_envelope(&bytes).expect("decode");
        held.offer(&domain, &ctx, &ctx.clock, now, envelope).map(|_| ()).map_err(|r| r.as_str())
    };
    let witnesses: Vec<_> =
        (0..8).map(|k| offer(witness(&members, 1 + k % 3, 0, -1100 - k as i16))).collect();
    assert_eq!(witnesses.iter().filter(|r| r.is_ok()).count(), 4);
    assert!(witnesses[4..].iter().all(|r| *r == Err("epoch_full")), "{witnesses:?}");
    // Gateway 1 also sent witnesses: its attestations have their own share.
    let attest = |i: usize, sequence: u64| {
        let start = GENESIS_S + 5 * sequence;
        attestation_by(&members, i, 0, reading(&meter_key(), sequence, start, start + 5, 1_000, 1_010))
    };
    let results: Vec<_> = [(1, 1), (1, 2), (1, 3), (1, 4), (2, 5), (2, 6)]
        .into_iter()
        .map(|(i, sequence)| offer(attest(i, sequence)))
        .collect();
    assert_eq!(results, [Ok(()), Ok(()), Ok(()), Err("gateway_full"), Ok(()), Err("epoch_full")]);
    // The proposer lists the attestations (the witnesses have no beacon).
    let chosen = pool::select(&ctx, &held);
    assert_eq!(chosen.len(), 4);
    let listed: Vec<&Report> = chosen.iter().filter_map(|id| held.get(id)).collect();
    assert_eq!(pool::summarize(&ctx, &listed).expect("consistent").attestation_count, 4);
    // A listing beyond the attestations' share is refused.
    let extra = codec::decode_envelope(&attest(3, 7)).expect("decode");
    let extra = pool::verify_report(&domain, &ctx, extra).expect("valid");
    let mut too_many = listed.clone();
    too_many.push(&extra);
    too_many.sort_by_key(|r| r.id);
    assert_eq!(pool::summarize(&ctx, &too_many).map(|_| ()).map_err(|(_, r)| r), Err(pool::Reason::TooMany));
}

#[test]
fn an_epoch_counts_one_attestation_per_meter_reading_and_sums_its_energy() {
    let members = members();
    let ctx = context(&members);
    let domain = Domain::new(NETWORK);
    let report = |i: usize, reading: Envelope| {
        let envelope = codec::decode_envelope(&attestation_by(&members, i, 0, reading)).expect("decode");
        pool::verify_report(&domain, &ctx, envelope).expect("valid")
    };
    let first = reading(&meter_key(), 1, GENESIS_S + 10, GENESIS_S + 20, 1_000, 1_010);
    let faulty = {
        let r = MeterReading {
            meter: meter_key().meter_id(),
            sequence: 3,
            interval_start_s: GENESIS_S + 30,
            interval_end_s: GENESIS_S + 40,
            register_start_wh: 1_020,
            register_end_wh: 1_030,
            status: MeterStatus::Fault,
        };
        Envelope::seal(&domain, &meter_key(), &Message::MeterReading(r)).expect("seal")
    };
    let reports = [
        // Two gateways attest the same reading; a third reading overlaps it.
        report(1, first.clone()),
        report(2, first),
        report(3, reading(&meter_key(), 2, GENESIS_S + 15, GENESIS_S + 25, 1_010, 1_012)),
        report(1, reading(&meter_key(), 4, GENESIS_S + 40, GENESIS_S + 50, 1_030, 1_045)),
        report(2, faulty),
    ];
    let mut held = Pool::new();
    for r in &reports {
        held.insert(r.clone());
    }
    let chosen = pool::select(&ctx, &held);
    assert_eq!(
        chosen.len(),
        3,
        "one of the three conflicting attestations, the later one and the faulty one"
    );
    let listed: Vec<&Report> = chosen.iter().filter_map(|id| held.get(id)).collect();
    let summary = pool::summarize(&ctx, &listed).expect("consistent");
    assert_eq!(summary.attestation_count, 3);
    // The counted one of the conflicting three is the first in id order.
    let conflicting = &reports[..3];
    let kept = conflicting.iter().filter(|r| chosen.contains(&r.id)).collect::<Vec<_>>();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].id, conflicting.iter().map(|r| r.id).min().expect("three"));
    let Message::MeterAttestation(a) = &kept[0].body else { panic!("attestation") };
    let kept_wh =
        pool::attested_reading(a).map(|r| r.register_end_wh - r.register_start_wh).expect("reading");
    // The faulty interval earns nothing.
    let wh = kept_wh + 15;
    assert_eq!(summary.energy_wh, wh);
    assert_eq!(summary.energy_root, MerkleTree::new([energy_leaf(&meter_key().meter_id(), wh)]).root());
    // A proposal listing two attestations of one reading is refused.
    let mut all: Vec<&Report> = reports.iter().collect();
    all.sort_by_key(|r| r.id);
    assert!(matches!(pool::summarize(&ctx, &all), Err((_, pool::Reason::SecondAttestation))));
}

/// Drives a lone member through epoch 0's decision until it asks a peer for
/// the decision; returns the fetch's id.
fn next_decision_fetch(n: &mut Node, from_ms: u64) -> (u64, u64) {
    for k in 0..100 {
        let now = from_ms + k * 1_000;
        n.handle_input(Input::Timeout { now_ms: now });
        for o in drain(n) {
            if let Output::Fetch { id, request: Request::Decision { epoch: 0 }, .. } = o {
                return (id, now);
            }
        }
    }
    panic!("no decision fetch");
}

fn certificate(members: &[Member], signers: &[Keypair], summary: &EpochSummary, round: u32) -> Certificate {
    let hash = pool::summary_hash(summary);
    let bytes = Certificate::sign_bytes(NETWORK, members[0].config.region, 0, round, &hash);
    let mut signatures: Vec<CommitSignature> = signers
        .iter()
        .map(|k| CommitSignature { signer: k.gateway_id(), signature: k.sign(&bytes) })
        .collect();
    signatures.sort_by_key(|s| s.signer);
    Certificate { region: members[0].config.region, epoch: 0, round: 0, summary: hash, signatures }
}

#[test]
fn a_forged_certificate_fetched_as_a_decision_is_refused() {
    let members = members();
    let keys: Vec<Keypair> = members.iter().map(|m| Keypair::from_secret(m.key_secret)).collect();
    let ctx = context(&members);
    let summary = pool::summarize(&ctx, &[]).expect("the empty summary");
    let outsiders: Vec<Keypair> = (0..3).map(|k| Keypair::from_secret([40 + k; 32])).collect();
    let forged = [
        // Signed over another round than the certificate names.
        certificate(&members, &keys[..3], &summary, 5),
        // Two of four: below 2f + 1 = 3.
        certificate(&members, &keys[..2], &summary, 0),
        // Three signatures, but not of committee members.
        certificate(&members, &outsiders, &summary, 0),
        // One member's signature three times.
        {
            let mut c = certificate(&members, &keys[..1], &summary, 0);
            c.signatures = vec![c.signatures[0].clone(); 3];
            c
        },
    ];
    let mut other_committee = summary.clone();
    other_committee.committee_hash = Hash32([9; 32]);
    let t = decides_at(&members);
    let mut n = node(&members, 1, Stored::default(), t);
    let mut now = t;
    let mut answers: Vec<(EpochSummary, Certificate)> =
        forged.into_iter().map(|c| (summary.clone(), c)).collect();
    answers.push((other_committee.clone(), certificate(&members, &keys[..3], &other_committee, 0)));
    for (s, c) in answers {
        let (id, at) = next_decision_fetch(&mut n, now);
        now = at;
        let response = Response::Decision { summary: Box::new(s), certificate: Box::new(c) };
        n.handle_input(Input::FetchResponse { now_ms: now, id, result: Ok(response) });
        drain(&mut n);
        assert_ne!(n.status(0), Status::Finalized, "a forged certificate finalized epoch 0");
    }
    // The genuine one is taken: the checks above are not refusing everything.
    let (id, at) = next_decision_fetch(&mut n, now);
    let genuine = certificate(&members, &keys[1..4], &summary, 0);
    let response = Response::Decision { summary: Box::new(summary.clone()), certificate: Box::new(genuine) };
    n.handle_input(Input::FetchResponse { now_ms: at, id, result: Ok(response) });
    assert_eq!(n.status(0), Status::Finalized);
    assert_eq!(n.finalized(0).map(|(s, _)| s.clone()), Some(summary));
}

#[test]
fn a_registry_change_applies_from_the_next_epoch_and_survives_a_restart() {
    let members = network(5, 7);
    let four: Vec<GatewayId> = members[..4].iter().map(|m| m.id).collect();
    let five: Vec<GatewayId> = members.iter().map(|m| m.id).collect();
    let t = GENESIS_MS + 30_000;
    let mut n = Node::new(
        members[0].config.clone(),
        Keypair::from_secret(members[0].key_secret),
        four.clone(),
        Stored::default(),
        t,
    );
    let mut stored: Vec<Record> = Vec::new();
    let mut keep = |out: Vec<Output>| {
        for o in out {
            if let Output::Persist { batch, .. } = o {
                stored.extend(batch);
            }
        }
    };
    keep(drain(&mut n));
    n.handle_input(Input::Registry { now_ms: t + 1, as_of_ms: t + 1, members: five.clone() });
    keep(drain(&mut n));
    let sorted = |mut ids: Vec<GatewayId>| {
        ids.sort();
        ids
    };
    assert!(stored.contains(&Record::Registry { from_epoch: 1, members: sorted(five.clone()) }));
    assert_eq!(n.committee_members(0), sorted(four.clone()).as_slice(), "the open epoch keeps its committee");
    assert_eq!(n.committee_members(1), sorted(five.clone()).as_slice());
    // Restarted with the chain's current registry: epoch 0 still has four.
    let again = Node::new(
        members[0].config.clone(),
        Keypair::from_secret(members[0].key_secret),
        five.clone(),
        Stored { records: stored },
        t + 2,
    );
    assert_eq!(again.committee_members(0), sorted(four).as_slice());
    assert_eq!(again.committee_members(1), sorted(five).as_slice());
}

#[test]
fn witnesses_claiming_more_than_free_space_uncorroborated_are_listed_but_not_rewarded() {
    let g = |b: u8| GatewayId([b; 32]);
    let listed = |list: &[(u8, i64)]| -> Vec<pool::ListedWitness> {
        list.iter()
            .map(|(b, excess)| pool::ListedWitness {
                witness: g(*b),
                excess_loss_ddb: *excess,
                received_at_ms: 1_000,
            })
            .collect()
    };
    let params = meshd_protocol::rules::witness::Params::default();
    // Three witnesses 3 dB above free space (a Sybil ring's forgeries) and two cluttered links.
    let mut five = listed(&[(5, -30), (1, 280), (4, -30), (2, 150), (3, -30)]);
    assert_eq!(pool::rewarded_witnesses(&five, &params), vec![g(1), g(2)]);
    // The verdict depends on the set, not on its order.
    five.reverse();
    assert_eq!(pool::rewarded_witnesses(&five, &params), vec![g(1), g(2)]);
    // One near-line-of-sight witness (5 dB under free space) is not enough ...
    assert_eq!(pool::rewarded_witnesses(&listed(&[(7, -30), (1, 50)]), &params), vec![g(1)]);
    // ... two show the site open.
    assert_eq!(
        pool::rewarded_witnesses(&listed(&[(7, -30), (1, 50), (2, 90)]), &params),
        vec![g(1), g(2), g(7)]
    );
}

#[test]
fn of_more_witnesses_than_the_cap_the_earliest_received_are_rewarded() {
    let g = |b: u8| GatewayId([b; 32]);
    let params = meshd_protocol::rules::witness::Params {
        max_rewarded_witnesses: 2,
        ..meshd_protocol::rules::witness::Params::default()
    };
    // Received at 30, 10, 20 and 10 ms: the two at 10 ms win; an
    // uncorroborated claim above free space does not take a slot.
    let list = [(3, 30, 150), (2, 10, 150), (1, 20, 150), (4, 10, 150), (9, 0, -30)];
    let listed: Vec<pool::ListedWitness> = list
        .iter()
        .map(|(b, at, excess)| pool::ListedWitness {
            witness: g(*b),
            excess_loss_ddb: *excess,
            received_at_ms: *at,
        })
        .collect();
    assert_eq!(pool::rewarded_witnesses(&listed, &params), vec![g(2), g(4)]);
}
