//! One node driven by hand: ordering of persists and sends, the report pool's
//! rules, restart safety.

use meshd_node::sim::{GENESIS_MS, Member, NETWORK, network};
use meshd_node::{Input, Node, Output, Record, Status, Stored, Topic};
use meshd_protocol::codec;
use meshd_protocol::envelope::{Domain, Envelope};
use meshd_protocol::keys::Keypair;
use meshd_protocol::message::{BeaconId, DataRate, Message, VoteStep, WitnessReport};

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
