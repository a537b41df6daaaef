//! The anchoring task: a [`Collector`] fed from a bounded channel, and the
//! complete sets it hands out submitted through an [`Anchorer`].
//!
//! The daemon creates it with [`AnchorService::new`], spawns
//! [`AnchorService::run`], and sends every [`message::AnchorSignature`] it
//! receives on the global topic — and its own, signed with
//! [`crate::sign_anchor`] on the node's `Output::SignAnchor` — as
//! [`ServiceInput::Signature`] through the returned [`mpsc::Sender`]
//! (`try_send`: a full queue drops the signature, which peers re-publish),
//! and [`ServiceInput::Committee`] when the anchor committee changes. What happened comes back as [`ServiceEvent`]s.
//! The task ends when every sender is dropped.
//!
//! Submissions run concurrently with collection (one task per range, at most
//! one per range at a time), so a slow chain never stalls the inbox.

use std::time::Duration;

use meshd_protocol::keys::EvmAddress;
use meshd_protocol::message;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::anchorer::{AnchorOutcome, Anchorer, SubmitError};
use crate::collector::{Collector, Offered, Refused};
use crate::digest::EpochRange;
use meshd_protocol::hash::Hash32;

/// What the daemon sends the anchoring task.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceInput {
    /// A signature received on the global topic, or this gateway's own.
    Signature(message::AnchorSignature),
    /// The anchor committee changed (registry or committee events): these
    /// anchor addresses, any order (see [`Collector::set_committee`]).
    Committee(Vec<EvmAddress>),
}

/// What the anchoring task reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServiceEvent {
    /// A signature was refused.
    Refused(Refused),
    /// A root reached its quorum.
    QuorumReached {
        /// The range.
        range: EpochRange,
        /// The root.
        root: Hash32,
    },
    /// The range is anchored (by this gateway's transaction or another's).
    Anchored {
        /// The range.
        range: EpochRange,
        /// The root.
        root: Hash32,
        /// How.
        outcome: AnchorOutcome,
    },
    /// A submission failed. RPC failures and give-ups are tried again a
    /// fallback delay later; a refusal by the contract or a conflicting
    /// root on chain is final (the range is dropped).
    SubmitFailed {
        /// The range.
        range: EpochRange,
        /// Why.
        error: SubmitError,
    },
}

/// The anchoring task. See the module docs.
pub struct AnchorService {
    collector: Collector,
    anchorer: Anchorer,
    inbox: mpsc::Receiver<ServiceInput>,
    events: mpsc::Sender<ServiceEvent>,
}

/// Longest sleep when nothing is due: the loop also wakes on every signature.
const IDLE_WAKE: Duration = Duration::from_secs(3_600);

impl AnchorService {
    /// The task, the sender of signatures into it and the receiver of its
    /// events, both channels bounded by `capacity` (at least 1). Events are
    /// dropped when the receiver lags (they are observations, not commands).
    pub fn new(
        collector: Collector,
        anchorer: Anchorer,
        capacity: usize,
    ) -> (AnchorService, mpsc::Sender<ServiceInput>, mpsc::Receiver<ServiceEvent>) {
        let (signatures, inbox) = mpsc::channel(capacity.max(1));
        let (events, event_rx) = mpsc::channel(capacity.max(1));
        (AnchorService { collector, anchorer, inbox, events }, signatures, event_rx)
    }

    fn emit(&self, event: ServiceEvent) {
        if let Err(error) = self.events.try_send(event) {
            tracing::debug!(%error, "anchor event dropped");
        }
    }

    /// Runs until every signature sender is dropped and in-flight submissions end.
    pub async fn run(mut self) {
        let start = Instant::now();
        let now_ms = move || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut submitting: JoinSet<(EpochRange, Hash32, Result<AnchorOutcome, SubmitError>)> =
            JoinSet::new();
        let mut open = true;
        loop {
            while let Some(submission) = self.collector.poll_submission(now_ms()) {
                let anchorer = self.anchorer.clone();
                tracing::info!(range = %submission.range, signatures = submission.signatures.len(), "submitting anchor");
                submitting.spawn(async move {
                    let result =
                        anchorer.submit(submission.range, submission.root, &submission.signatures).await;
                    (submission.range, submission.root, result)
                });
            }
            if !open && submitting.is_empty() {
                return;
            }
            let wake = self
                .collector
                .next_due_ms()
                .map_or(IDLE_WAKE, |due| Duration::from_millis(due.saturating_sub(now_ms())).min(IDLE_WAKE));
            tokio::select! {
                biased;
                Some(joined) = submitting.join_next(), if !submitting.is_empty() => {
                    let Ok((range, root, result)) = joined else { continue };
                    match result {
                        Ok(outcome) => {
                            tracing::info!(%range, block = outcome.block(), "anchored");
                            self.collector.settled(range);
                            self.emit(ServiceEvent::Anchored { range, root, outcome });
                        }
                        Err(error) => {
                            tracing::warn!(%range, %error, "anchor submission failed");
                            if matches!(error, SubmitError::ConflictingRoot { .. } | SubmitError::Rejected { .. }) {
                                // The chain's answer will not change: another root holds the
                                // range, or the contract refuses this set. Stop trying.
                                self.collector.settled(range);
                            } else {
                                self.collector.submit_failed(range, now_ms());
                            }
                            self.emit(ServiceEvent::SubmitFailed { range, error });
                        }
                    }
                }
                received = self.inbox.recv(), if open => match received {
                    Some(ServiceInput::Committee(members)) => self.collector.set_committee(members),
                    Some(ServiceInput::Signature(signature)) => match self.collector.offer(now_ms(), &signature) {
                        Ok(Offered::QuorumReached { range, root }) => {
                            self.emit(ServiceEvent::QuorumReached { range, root });
                        }
                        Ok(_) => {}
                        Err(refused) => {
                            tracing::debug!(%refused, "anchor signature refused");
                            self.emit(ServiceEvent::Refused(refused));
                        }
                    },
                    None => open = false,
                },
                () = tokio::time::sleep(wake), if open => {}
            }
        }
    }
}
