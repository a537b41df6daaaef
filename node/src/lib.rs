//! meshd's gateway brain: a sans-IO state machine for one gateway of one
//! region — report pool, epoch lifecycle, BFT consensus on epoch summaries,
//! beacon schedule and anchor digests.
//!
//! # Run loop
//!
//! ```text
//! let mut node = Node::new(config, key, registry, stored, now_ms);
//! loop {
//!     // Drain outputs until the node asks to be woken.
//!     let wake_at = loop {
//!         match node.poll_output() {
//!             Output::Timeout(at) => break at,
//!             Output::Persist { id, batch } => { store.write(batch); /* then */ input(Input::Persisted { id, .. }) }
//!             Output::Publish { topic, bytes } => gossip.publish(topic, bytes),
//!             Output::Fetch { id, peer, request } => gossip.fetch(id, peer, request),
//!             Output::Respond { id, response } => gossip.respond(id, response),
//!             Output::TransmitBeacon { .. } => radio.transmit(..),
//!             Output::SignAnchor { digest, .. } => chain.sign_and_submit(digest),
//!             Output::MeterVerdict { id, result } => ingest.answer(id, result),
//!             Output::Event(event) => metrics.observe(event),
//!         }
//!     };
//!     // Then wait for an input or `wake_at`, whichever comes first, and feed it:
//!     node.handle_input(next_input_or(Input::Timeout { now_ms: wake_at }));
//! }
//! ```
//!
//! Every input carries `now_ms`; the node reads no clock, draws no random
//! numbers and does no IO, so the daemon drives it with real IO and
//! [`sim`] drives hundreds of them in virtual time, deterministically from a
//! seed. Every command carries an id that comes back in its answer:
//! [`Output::Persist`] → [`Input::Persisted`], [`Output::Fetch`] →
//! [`Input::FetchResponse`], [`Input::FetchRequest`] → [`Output::Respond`],
//! [`Input::MeterReading`] → [`Output::MeterVerdict`].
//!
//! # Ordering
//!
//! A vote (and a proposal) is persisted before it is sent: the node emits
//! `Output::Persist { id, .. }` with the signed vote and holds the `Publish`
//! of that vote until `Input::Persisted { id }`. Persists must be applied in
//! id order. On start, [`Stored`] hands the persisted records back; the node
//! never signs a vote conflicting with a stored one, and resumes consensus in
//! the round and step, with the lock, it had reached.
//!
//! Own reports go through the same outbox: a beacon, witness or meter
//! attestation report this gateway signs is persisted ([`Record::Report`])
//! before it is published (and, for a beacon, before it is transmitted). On
//! start the stored reports are offered to their pools again and republished
//! while their epoch is open or in grace; a stored beacon report of an epoch
//! means that epoch's beacon is done, so a gateway restarting within an epoch
//! never beacons twice (if it crashed between storing and transmitting, that
//! epoch's beacon goes unheard rather than twice).
//!
//! # Energy meters
//!
//! The meter ingest feeds [`Input::MeterReading`] (the meter-signed envelope
//! and the meter's rated capacity). The node runs
//! [`meshd_protocol::rules::meter::check`] against the meter's last accepted
//! state, then requires the interval's end to fall in an epoch that takes
//! reports ([`pool::attestation_epoch`]) and its own pool to admit the
//! attestation. Refused: [`Output::MeterVerdict`] with the failed rule's
//! reason at once, nothing stored. Accepted: the signed `MeterAttestation`
//! and the meter's new state ([`Record::Meter`]) are persisted in one batch,
//! then the attestation is published and the verdict carries its id. Meter
//! states come back from [`Stored`] on start; a reading re-sent after a
//! crash that had made it durable is refused as `sequence_not_increasing`
//! (the ingest may treat that as already attested). Other gateways'
//! attestations are admitted and counted by the pool (see [`pool`]); the
//! summary's energy root and totals come from them.
//!
//! # Epoch lifecycle
//!
//! An epoch is open, then in grace (late reports still admitted), then
//! deciding: once its grace is over and the previous epoch is final, the
//! committee runs one Tendermint instance ([`consensus`]). It ends finalized
//! with a certificate of 2f+1 commit signatures, or shows as stalled with a
//! reason ([`Stall`]) in [`Node::status`] and as an [`Event::Stalled`].
//!
//! # Consensus engine: why not Malachite
//!
//! The preferred engine was Malachite's core (`arc-malachitebft-core-consensus`).
//! We evaluated 0.8 and wrote Tendermint's decision rules here instead
//! ([`consensus`], ~300 lines plus the node's driving code), because:
//! - **dependency footprint**: the crate depends on `tokio`, `futures`,
//!   `async-recursion`, `multiaddr` and `malachitebft-peer` (libp2p types).
//!   This crate must stay pure (no tokio, no sockets), and is compiled into
//!   the simulator thousands of times over.
//! - **control model**: Malachite drives consensus as an `async` coroutine
//!   (`genawaiter`) that yields effects and must be resumed synchronously
//!   inside its `process!` macro. Our ordering rule — a vote leaves only after
//!   a later, separate `Input::Persisted` — does not fit a resume-now effect
//!   model without buffering the coroutine's effects ourselves, which
//!   re-implements the driver around it.
//! - **determinism and size**: the rules of Tendermint (Buchman, Kwon,
//!   Milosevic 2018, Algorithm 1) fit in one small, fully-tested module with
//!   `BTreeMap`s only, and the proposal/validity check is ours anyway (fetch
//!   the listed reports, validate, recompute the summary).
//!
//! The same tests the issue asks of either engine run against it in [`sim`]
//! (see `tests/consensus.rs`).
//!
//! # Registry changes
//!
//! [`Input::Registry`] takes effect at an epoch boundary: the committee of
//! epoch `e` (and the set of gateways whose reports count in `e`) is the
//! registry as of `e`'s start. The input carries the chain time it holds at
//! (`as_of_ms`, the block's timestamp), so a registry as of a moment in epoch
//! `c` applies from `c + 1` on every member, whenever each reads it: an epoch
//! already being decided never changes committee. A member that reads it
//! late, once `c + 1` has begun, still applies it to `c + 1` unless that epoch
//! is already being decided; reports its pool admitted under the old registry
//! do not count ([`pool::select`] and [`pool::summarize`] check each signer
//! against the epoch's registry). Each change is persisted
//! ([`Record::Registry`]) and restored on start; the registry passed to
//! [`Node::new`] applies to every epoch on a first start and, as of the
//! start time, after a restart.
//!
//! # Small regions
//!
//! A region with fewer than [`committee::MIN_COMMITTEE`] (4) registered
//! gateways has no fault tolerance; its gateways join the committee of the
//! parent H3 cell, repeatedly, until they are at least four
//! ([`committee::committee_region`]). Only gateways of such small cells
//! count at the parent: a sibling cell with four or more keeps its own
//! committee, so it can never leave the small cells' gateways a committee
//! of one to three in name only. The committee region is computed from the
//! registry and passed as [`Config::region`].
//!
//! # Lossy links and lagging members
//!
//! Tendermint's liveness assumes every message sent is eventually delivered.
//! While an epoch is undecided, every twice the propose timeout a member
//! resends its own durable proposals and votes of that epoch (receivers drop
//! copies by id before verifying) and asks the next member for the epoch's
//! decision; a member that sees a committee member deciding a later epoch
//! asks it for the earlier decision. A decision fetched is a summary and a
//! certificate of 2f+1 valid commit signatures of the committee: at least f+1
//! honest members validated it, so it is final without re-validation.
//!
//! # Not done yet
//!
//! - Overlapping attestations of one meter are caught within an epoch only:
//!   a reading whose interval spans an epoch boundary and another one
//!   overlapping it in the next epoch are both counted if two different
//!   gateways attest them (one gateway's own meter state refuses the second).
//! - A member that reads a registry change only after the epoch it applies
//!   to is being decided keeps the old committee for that epoch, and refuses
//!   the others' certificate of it (the committee hash differs): it stays
//!   stalled there. Reading the chain at least once per grace period avoids
//!   it. Committee rotation (sampling) is not modelled.
//! - Meters are not registered: any registered gateway can attest readings
//!   of a meter key it made up; the rated capacity is known to the attesting
//!   gateway only. A meter registry (meter id, capacity, owner) on chain
//!   would let every member check both.
//! - [`Output::SignAnchor`]'s root covers this region's summaries only
//!   (the simulators check it against their ground truth). The root a
//!   gateway signs for the chain covers every region: [`anchors`] collects
//!   the other regions' certified summaries from the global topic.
//! - A proposal lists at most [`meshd_protocol::codec::MAX_PROPOSAL_REPORTS`]
//!   (360) reports, so a region's pool admits no more per epoch; larger
//!   epochs need proposal parts (design below). Meter attestations have
//!   their own share of it ([`pool::Limits`]), so a witness-dense region
//!   drops witnesses first, never its meters' energy; a region of 31
//!   members hears up to 930 witnesses an epoch and counts at most 209.
//!
//! # Design: proposals beyond 360 reports
//!
//! Not built yet: it needs a new wire kind and a new fetch request, so the
//! gossip transport and the store change with it. The shape:
//!
//! - **Wire.** `Proposal` keeps its form; its `report_ids` are part 0 (the
//!   first ≤ 360 ids in order). The summary's `beacon_count + witness_count +
//!   attestation_count` is the full list's length, so a member knows how many
//!   parts to expect: `⌈total / 360⌉`. Parts 1.. travel as a new kind,
//!   `ProposalPart { region, epoch, round, value, index, report_ids }` (tag
//!   18, ≤ 360 ids, the same body limit as a proposal), signed by the round's
//!   proposer. Envelope size and [`meshd_protocol::codec::MAX_ENVELOPE_LEN`]
//!   stay as they are.
//! - **Proposer.** Seals the proposal and its parts together, persists them
//!   in one batch (a `Record::ProposalPart` beside [`Record::Proposal`]),
//!   then publishes all; rebroadcast and restart resend the parts with the
//!   proposal (the resend buffer grows by the parts per round).
//! - **Members.** A value is judged once every part is held: parts from
//!   anyone but the round's proposer, of another value, or with an index past
//!   the expected count are refused; ids must be sorted across parts; the
//!   concatenation's Merkle root must equal `reports_root` (checked by
//!   [`pool::summarize`] as today). Missing parts are fetched from the
//!   proposer (`Request::ProposalPart { epoch, value, index }`), missing
//!   reports in pages of 360 ids (the answer cap of [`Request::Reports`]);
//!   the value is judged when the last page returns. The propose timeout must
//!   cover the extra fetches: it grows by one round trip per part.
//! - **Limits.** The per-epoch cap becomes parts × 360 (4 parts: 1,440
//!   reports, about 600 KB of envelopes per epoch held), the pool's seen-set
//!   bound scales with it, and distinct values stay bounded by
//!   [`MAX_PROPOSALS`], so held parts are at most `MAX_PROPOSALS × parts`.
//! - **Tests.** The sim with a witness-dense region (more than 360 reports per
//!   epoch), a proposer crashing between parts, and a Byzantine proposer
//!   sending conflicting parts (the root check refuses the value; nobody
//!   prevotes it).
//!
//! # Modules
//!
//! - [`pool`]: report admission (duplicates, signature once, timing, limits,
//!   reason codes), selection and summary recomputation.
//! - [`consensus`]: Tendermint rules per (region, epoch).
//! - [`committee`]: committee, small-region rule, beacon time, anchor digest.
//! - [`anchors`]: every region's certified summaries, and when a range is
//!   ready to be signed for the chain.
//! - [`sim`]: the deterministic harness (virtual time, seeded network).
#![deny(missing_docs)]

pub mod anchors;
pub mod committee;
pub mod consensus;
mod node;
pub mod pool;
pub mod sim;

pub use node::{
    Config, Event, FetchError, Heard, Input, KEEP_FINALIZED, MAX_PROPOSALS, MAX_QUEUED_OUTPUTS,
    MAX_SEEN_MESSAGES, Metrics, Node, Output, Radio, Record, Request, Response, Stall, Status, Stored,
    Timeouts, Topic,
};
