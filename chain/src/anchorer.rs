//! Submitting anchors: the IO half of [`crate::decision`].
//!
//! [`Anchorer::submit`] loops: observe the chain ([`Observation`]), ask
//! [`decide`] what to do, do it (send, wait a poll interval, or finish).
//! Every RPC call is retried with exponential backoff on transport errors
//! ([`RetryPolicy`]). A transaction is signed once per submission with an
//! explicit nonce, gas limit and fees, and re-sent byte for byte on retries,
//! so a retry never creates a second transaction. When its block is
//! reorganised away (the receipt disappears and `rootOf` reads zero) the
//! next observation says [`Decision::Submit`] and it is signed and sent again.

use std::time::Duration;

use alloy::eips::{BlockId, Encodable2718};
use alloy::network::{Ethereum, EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolEvent};
use alloy::transports::RpcError;
use meshd_protocol::hash::Hash32;
use meshd_protocol::keys::EvmAddress;

use crate::bindings::anchor::EpochAnchor;
use crate::decision::{Decision, Observation, OwnTx, decide};
use crate::digest::EpochRange;
use crate::rejection::AnchorRejection;
use crate::retry::{RetryPolicy, retry};

/// One committee member's signature of an anchor digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnchorSignature {
    /// The member's anchor address.
    pub signer: EvmAddress,
    /// `r ‖ s ‖ v` as `AnchorKey::sign_digest` returns it.
    pub signature: [u8; 65],
}

/// Sorts signatures by signer, the order `anchor` requires. Duplicates are
/// kept: the contract refuses them (`SignersNotAscending`), and dropping one
/// silently could hide a bug upstream.
pub fn sort_by_signer(signatures: &mut [AnchorSignature]) {
    signatures.sort_by_key(|s| s.signer);
}

/// How the submitter behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnchorConfig {
    /// Blocks, counting the anchoring block, before an anchor is reported done.
    pub confirmations: u64,
    /// The wait between two observations while a transaction is pending or confirming.
    pub poll_interval: Duration,
    /// Retries of each RPC call.
    pub retry: RetryPolicy,
    /// The most transactions one `submit` sends (re-submissions after reorgs or drops included).
    pub max_submissions: u32,
    /// Percent added to the gas estimate.
    pub gas_margin_percent: u64,
    /// How many blocks back `Anchored` events are searched for a range anchored by another member.
    pub log_lookback_blocks: u64,
}

impl Default for AnchorConfig {
    /// 3 confirmations (a reorg deeper than 2 blocks is rare on the chains
    /// meshd targets; Avalanche C-Chain is final in one); polls every 2 s (a
    /// block time of Avalanche, a sixth of Ethereum's); 5 submissions (each
    /// one follows a reorg or a dropped transaction, more means something is
    /// wrong); a 20 % gas margin (the estimate is exact unless state changes
    /// in between, e.g. a pending committee activates); 10,000 blocks of log
    /// lookback (below common RPC providers' `eth_getLogs` range limits).
    fn default() -> Self {
        AnchorConfig {
            confirmations: 3,
            poll_interval: Duration::from_secs(2),
            retry: RetryPolicy::default(),
            max_submissions: 5,
            gas_margin_percent: 20,
            log_lookback_blocks: 10_000,
        }
    }
}

/// How an anchor ended successfully.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnchorOutcome {
    /// Our transaction anchored the root.
    Anchored {
        /// The transaction.
        tx_hash: B256,
        /// Its block.
        block: u64,
        /// The gas it used.
        gas_used: u64,
        /// The transactions sent (more than 1 after a reorg or a drop).
        submissions: u32,
    },
    /// The same root was already anchored for the range (another member's
    /// submission, or ours from before a restart): nothing was left to do.
    AlreadyAnchored {
        /// The anchoring block.
        block: u64,
    },
}

impl AnchorOutcome {
    /// The block that anchored the root.
    pub fn block(&self) -> u64 {
        match self {
            AnchorOutcome::Anchored { block, .. } | AnchorOutcome::AlreadyAnchored { block } => *block,
        }
    }
}

/// Why [`Anchorer::submit`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The contract refuses the anchor (decoded from its custom error).
    #[error("EpochAnchor refused {range}: {rejection}")]
    Rejected {
        /// The range.
        range: EpochRange,
        /// The contract's reason.
        rejection: AnchorRejection,
    },
    /// A different root is anchored for exactly this range: the committee
    /// signed two roots, or this node computed a different one.
    #[error("{range} are anchored with root {anchored}, not {ours}")]
    ConflictingRoot {
        /// The range.
        range: EpochRange,
        /// The root on chain.
        anchored: Hash32,
        /// Ours.
        ours: Hash32,
    },
    /// An RPC call kept failing (the node is down or unreachable).
    #[error("RPC `{operation}` failed after {attempts} attempts: {source}")]
    Rpc {
        /// What was asked.
        operation: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        #[source]
        source: alloy::contract::Error,
    },
    /// The transaction could not be built or signed.
    #[error("signing the anchor transaction failed: {0}")]
    Signing(String),
    /// `max_submissions` transactions were sent and none stayed anchored.
    #[error("{range} not anchored after {submissions} submissions (reorganised away or dropped each time)")]
    GaveUp {
        /// The range.
        range: EpochRange,
        /// Transactions sent.
        submissions: u32,
    },
}

/// Submits anchors to one `EpochAnchor` with one account.
#[derive(Clone, Debug)]
pub struct Anchorer {
    provider: RootProvider<Ethereum>,
    contract: EpochAnchor::EpochAnchorInstance<RootProvider<Ethereum>>,
    wallet: EthereumWallet,
    from: Address,
    config: AnchorConfig,
}

struct Sent {
    hash: B256,
}

impl Anchorer {
    /// An anchorer for the `EpochAnchor` at `anchor`, reached over HTTP at
    /// `rpc_url`, paying gas from `signer`'s account. No IO happens here.
    pub fn new(
        rpc_url: crate::Url,
        anchor: Address,
        signer: PrivateKeySigner,
        config: AnchorConfig,
    ) -> Anchorer {
        let provider = RootProvider::new_http(rpc_url);
        let from = signer.address();
        Anchorer {
            contract: EpochAnchor::new(anchor, provider.clone()),
            provider,
            wallet: EthereumWallet::from(signer),
            from,
            config,
        }
    }

    /// The account that sends the transactions.
    pub fn sender(&self) -> Address {
        self.from
    }

    /// Anchors `root` over `range` with `signatures` (in the order given;
    /// see [`sort_by_signer`]) and waits for `confirmations`. Idempotent: a
    /// range already anchored with `root` is [`AnchorOutcome::AlreadyAnchored`],
    /// one anchored with another root is [`SubmitError::ConflictingRoot`].
    pub async fn submit(
        &self,
        range: EpochRange,
        root: Hash32,
        signatures: &[AnchorSignature],
    ) -> Result<AnchorOutcome, SubmitError> {
        let mut own: Option<B256> = None;
        let mut submissions = 0u32;
        loop {
            let (seen, gas_used) = self.observe(range, own).await?;
            match decide(range, &root, self.config.confirmations, &seen) {
                Decision::Done { block } => {
                    return Ok(match (own, seen.own, gas_used) {
                        (
                            Some(tx_hash),
                            Some(OwnTx::Mined { block: mined, success: true }),
                            Some(gas_used),
                        ) if mined == block => {
                            AnchorOutcome::Anchored { tx_hash, block, gas_used, submissions }
                        }
                        _ => AnchorOutcome::AlreadyAnchored { block },
                    });
                }
                Decision::Wait => tokio::time::sleep(self.config.poll_interval).await,
                Decision::Conflict { anchored } => {
                    return Err(SubmitError::ConflictingRoot { range, anchored, ours: root });
                }
                Decision::Overlaps { next_epoch } => {
                    return Err(SubmitError::Rejected {
                        range,
                        rejection: AnchorRejection::RangeOverlaps { from: range.from, next_epoch },
                    });
                }
                Decision::Submit => {
                    if submissions >= self.config.max_submissions {
                        return Err(SubmitError::GaveUp { range, submissions });
                    }
                    match self.send(range, root, signatures).await {
                        Ok(sent) => {
                            submissions += 1;
                            tracing::info!(%range, tx = %sent.hash, submissions, "anchor sent");
                            own = Some(sent.hash);
                        }
                        // Another member's transaction landed between our
                        // observation and the estimate: observe again (done or conflict).
                        Err(SubmitError::Rejected {
                            rejection: AnchorRejection::AlreadyAnchored { .. },
                            ..
                        }) => {
                            tokio::time::sleep(self.config.poll_interval).await;
                        }
                        Err(error) => return Err(error),
                    }
                }
            }
        }
    }

    /// Sends one `anchor` transaction without looking at the chain first
    /// (no idempotency check, no confirmations): estimates gas (which
    /// surfaces the contract's refusal as [`SubmitError::Rejected`]), signs
    /// with the pending nonce and sends. Returns the transaction hash.
    pub async fn send_once(
        &self,
        range: EpochRange,
        root: Hash32,
        signatures: &[AnchorSignature],
    ) -> Result<B256, SubmitError> {
        self.send(range, root, signatures).await.map(|sent| sent.hash)
    }

    fn call_data(range: EpochRange, root: Hash32, signatures: &[AnchorSignature]) -> Bytes {
        let signers = signatures.iter().map(|s| Address::from(s.signer.0)).collect();
        let joined: Vec<u8> = signatures.iter().flat_map(|s| s.signature).collect();
        EpochAnchor::anchorCall {
            fromEpoch: range.from,
            toEpoch: range.to,
            root: B256::from(root.0),
            signers,
            signatures: joined.into(),
        }
        .abi_encode()
        .into()
    }

    fn rpc_error(operation: &'static str) -> impl FnOnce((alloy::contract::Error, u32)) -> SubmitError {
        move |(source, attempts)| SubmitError::Rpc { operation, attempts, source }
    }

    async fn send(
        &self,
        range: EpochRange,
        root: Hash32,
        signatures: &[AnchorSignature],
    ) -> Result<Sent, SubmitError> {
        let policy = &self.config.retry;
        let request = TransactionRequest::default()
            .with_from(self.from)
            .with_to(*self.contract.address())
            .with_input(Self::call_data(range, root, signatures));

        let estimate = retry(policy, "eth_estimateGas", || async {
            self.provider.estimate_gas(request.clone()).await.map_err(Into::into)
        })
        .await;
        let gas = match estimate {
            Ok(gas) => gas,
            Err((alloy::contract::Error::TransportError(RpcError::ErrorResp(payload)), _))
                if payload.as_revert_data().is_some() =>
            {
                let data = payload.as_revert_data().unwrap_or_default();
                return Err(SubmitError::Rejected {
                    range,
                    rejection: AnchorRejection::from_revert_data(&data),
                });
            }
            Err(failure) => return Err(Self::rpc_error("eth_estimateGas")(failure)),
        };
        let gas_limit = gas.saturating_add(gas.saturating_mul(self.config.gas_margin_percent) / 100);

        let chain_id =
            retry(policy, "eth_chainId", || async { self.provider.get_chain_id().await.map_err(Into::into) })
                .await
                .map_err(Self::rpc_error("eth_chainId"))?;
        let nonce = retry(policy, "eth_getTransactionCount", || async {
            self.provider.get_transaction_count(self.from).pending().await.map_err(Into::into)
        })
        .await
        .map_err(Self::rpc_error("eth_getTransactionCount"))?;
        let fees = retry(policy, "eth_feeHistory", || async {
            self.provider.estimate_eip1559_fees().await.map_err(Into::into)
        })
        .await
        .map_err(Self::rpc_error("eth_feeHistory"))?;

        let envelope = request
            .with_chain_id(chain_id)
            .with_nonce(nonce)
            .with_gas_limit(gas_limit)
            .with_max_fee_per_gas(fees.max_fee_per_gas)
            .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas)
            .build(&self.wallet)
            .await
            .map_err(|e| SubmitError::Signing(e.to_string()))?;
        let hash = *envelope.tx_hash();
        let raw = envelope.encoded_2718();

        let sent = retry(policy, "eth_sendRawTransaction", || async {
            match self.provider.send_raw_transaction(&raw).await {
                Ok(_) => Ok(()),
                // A retry of bytes the node already took (the first answer was lost).
                Err(RpcError::ErrorResp(payload)) if is_already_known(&payload.message) => Ok(()),
                Err(error) => Err(error.into()),
            }
        })
        .await;
        match sent {
            Ok(()) => Ok(Sent { hash }),
            // The nonce was used meanwhile (by our own lost-answer send, or
            // another process with this key): observation sorts it out.
            Err((alloy::contract::Error::TransportError(RpcError::ErrorResp(payload)), _))
                if payload.message.to_ascii_lowercase().contains("nonce too low") =>
            {
                Ok(Sent { hash })
            }
            Err(failure) => Err(Self::rpc_error("eth_sendRawTransaction")(failure)),
        }
    }

    /// Reads the range's state at the head, and our transaction's.
    /// Returns the observation and our transaction's gas used when mined.
    async fn observe(
        &self,
        range: EpochRange,
        own: Option<B256>,
    ) -> Result<(Observation, Option<u64>), SubmitError> {
        let policy = &self.config.retry;
        let head = retry(policy, "eth_blockNumber", || async {
            self.provider.get_block_number().await.map_err(Into::into)
        })
        .await
        .map_err(Self::rpc_error("eth_blockNumber"))?;
        let at = BlockId::number(head);
        let root = retry(policy, "rootOf", || async {
            self.contract.rootOf(range.from, range.to).block(at).call().await
        })
        .await
        .map_err(Self::rpc_error("rootOf"))?;
        let next_epoch =
            retry(policy, "nextEpoch", || async { self.contract.nextEpoch().block(at).call().await })
                .await
                .map_err(Self::rpc_error("nextEpoch"))?;

        let mut own_state = None;
        let mut gas_used = None;
        if let Some(hash) = own {
            let receipt = retry(policy, "eth_getTransactionReceipt", || async {
                self.provider.get_transaction_receipt(hash).await.map_err(Into::into)
            })
            .await
            .map_err(Self::rpc_error("eth_getTransactionReceipt"))?;
            own_state = Some(match receipt {
                Some(receipt) => match receipt.block_number {
                    Some(block) => {
                        gas_used = Some(receipt.gas_used);
                        OwnTx::Mined { block, success: receipt.status() }
                    }
                    None => OwnTx::Pending,
                },
                None => {
                    let known = retry(policy, "eth_getTransactionByHash", || async {
                        self.provider.get_transaction_by_hash(hash).await.map_err(Into::into)
                    })
                    .await
                    .map_err(Self::rpc_error("eth_getTransactionByHash"))?;
                    if known.is_some() { OwnTx::Pending } else { OwnTx::Unknown }
                }
            });
        }

        let anchored_root = (root != B256::ZERO).then_some(Hash32(root.0));
        let mut anchored_block = match own_state {
            Some(OwnTx::Mined { block, success: true }) if anchored_root.is_some() => Some(block),
            _ => None,
        };
        if anchored_root.is_some() && anchored_block.is_none() {
            anchored_block = self.anchored_block(range, root, head).await?;
        }
        let seen = Observation { anchored_root, anchored_block, next_epoch, head, own: own_state };
        tracing::debug!(%range, ?seen, "observed");
        Ok((seen, gas_used))
    }

    /// The block of the latest `Anchored` event for `range` with `root`
    /// within the lookback window.
    async fn anchored_block(
        &self,
        range: EpochRange,
        root: B256,
        head: u64,
    ) -> Result<Option<u64>, SubmitError> {
        let filter = Filter::new()
            .address(*self.contract.address())
            .event_signature(EpochAnchor::Anchored::SIGNATURE_HASH)
            .topic1(B256::from(U256::from(range.from)))
            .from_block(head.saturating_sub(self.config.log_lookback_blocks))
            .to_block(head);
        let logs = retry(&self.config.retry, "eth_getLogs", || async {
            self.provider.get_logs(&filter).await.map_err(Into::into)
        })
        .await
        .map_err(Self::rpc_error("eth_getLogs"))?;
        Ok(logs
            .iter()
            .filter_map(|log| {
                let decoded = log.log_decode::<EpochAnchor::Anchored>().ok()?;
                let event = &decoded.inner.data;
                (event.toEpoch == range.to && event.root == root).then_some(log.block_number).flatten()
            })
            .max())
    }
}

fn is_already_known(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("already known")
        || message.contains("already imported")
        || message.contains("known transaction")
}
