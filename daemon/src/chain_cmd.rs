//! The chain commands of `meshd`: development deployment, gateway
//! registration, proofs from the local store, their verification against the
//! chain, reward claims and certificate mints. The proof JSON is
//! `meshd_chain::proof::Proof` (docs/chain.md §12).
//!
//! - `meshd chain deploy --rpc-url URL (--key-file F | --private-key HEX) [--member F]… [--location CELL]`
//! - `meshd chain register --rpc-url URL (--key-file F | --private-key HEX) --registry ADDR
//!   (--gateway F | --gateway-id ID --anchor-address ADDR) --location CELL [--owner ADDR]`
//! - `meshd chain register-meter --rpc-url URL (--key-file F | --private-key HEX) --registry ADDR
//!   --meter ID --rated-watts W --owner ADDR`
//! - `meshd chain claim PROOF --rpc-url URL --contract ADDR (--key-file F | --private-key HEX)`
//! - `meshd chain mint PROOF --rpc-url URL --contract ADDR (--key-file F | --private-key HEX)`
//! - `meshd prove report --store DIR --region CELL --epoch E --report-id ID [--anchor-every A] [--out F]`
//! - `meshd prove reward|energy --store DIR --region CELL --epoch E --id ID [--anchor-every A] [--out F]`
//! - `meshd verify PROOF --rpc-url URL --contract ADDR`
//!
//! Proofs come from what the gateway's store kept of each decided summary
//! (its settlement: the lists under the summary's roots), which a committee
//! member of the region keeps for every epoch it judged.

use std::fs;
use std::path::{Path, PathBuf};

use alloy::network::EthereumWallet;
use alloy::network::TransactionBuilder as _;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{Provider as _, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use meshd_chain::bindings::registry::GatewayRegistry;
use meshd_chain::proof::{self, Item, Proof, SummaryLeaf};
use meshd_chain::{CommitteeMember, DevDeployConfig, EpochRange, Url};
use meshd_protocol::geo::Region;
use meshd_protocol::merkle;
use meshd_protocol::{GatewayId, Hash32, MeterId};
use meshd_storage::{Options, Settlement, SledStore, StoreExt};

use crate::keys;

/// The chain commands, flattened into `meshd`'s top level.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Deploy contracts, register gateways, claim rewards and mint energy certificates.
    #[command(subcommand)]
    Chain(ChainCommand),
    /// Write a Merkle proof (JSON) of a report, a reward or a meter's energy
    /// from the local store, against the root anchored for its epoch range.
    #[command(subcommand)]
    Prove(ProveCommand),
    /// Check a proof against the root the EpochAnchor contract holds.
    Verify {
        /// The proof file (as `meshd prove` writes it).
        #[arg(value_name = "PROOF")]
        proof: PathBuf,
        #[command(flatten)]
        rpc: Rpc,
        /// The EpochAnchor contract.
        #[arg(long, value_name = "ADDR")]
        contract: Address,
    },
}

/// The JSON-RPC endpoint.
#[derive(Debug, Args)]
pub struct Rpc {
    /// JSON-RPC endpoint of the EVM node, e.g. http://127.0.0.1:8545.
    #[arg(long = "rpc-url", value_name = "URL")]
    url: Url,
}

/// The account that signs and pays for transactions.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Payer {
    /// A meshd key file: its anchor key's account pays (it must hold funds).
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// A funded account's private key, 0x and 64 hex digits (for development
    /// chains such as anvil; it is visible to other local users in the process list).
    #[arg(long, value_name = "HEX")]
    private_key: Option<String>,
}

impl Payer {
    fn signer(&self) -> anyhow::Result<PrivateKeySigner> {
        if let Some(path) = &self.key_file {
            let keys = keys::read(path)?;
            return PrivateKeySigner::from_bytes(&B256::from(*keys.anchor.secret_bytes())).map_err(|e| {
                anyhow!("the anchor key of {} is not a valid account key: {e}", path.display())
            });
        }
        let hex = self.private_key.as_deref().unwrap_or_default();
        hex.parse::<PrivateKeySigner>().map_err(|_| {
            anyhow!("--private-key is not a private key; fix: give 0x followed by 64 hex digits")
        })
    }
}

/// `meshd chain …`.
#[derive(Debug, Subcommand)]
pub enum ChainCommand {
    /// Deploy GatewayRegistry, EpochAnchor, a test reward token,
    /// RewardDistributor and EnergyCertificate to a development chain, with
    /// the paying account as admin and registrar; register the --member
    /// gateways and schedule them as the first anchor committee. Prints the
    /// addresses and the `[chain]` configuration lines.
    Deploy {
        #[command(flatten)]
        rpc: Rpc,
        #[command(flatten)]
        payer: Payer,
        /// A committee member's key file (repeat for each member); each is
        /// registered with its gateway id and anchor address, owned by that address.
        #[arg(long = "member", value_name = "FILE")]
        members: Vec<PathBuf>,
        /// The H3 cell (hex) the members are registered at: once for all
        /// members, or once per member in `--member` order (members in
        /// several regions share one anchor committee).
        #[arg(long = "location", value_name = "CELL", default_value = "8a2a1072b59ffff", value_parser = parse_cell)]
        locations: Vec<u64>,
        /// The protocol's epoch length, s (the certificate's capacity check).
        #[arg(long, default_value_t = 3_600)]
        epoch_seconds: u64,
        /// Epochs after which a meter's energy can no longer be minted.
        #[arg(long, default_value_t = 24)]
        mint_window_epochs: u64,
        /// Send this many ether from the paying account to each member's
        /// anchor account, which pays for the anchors it submits. Default: 0.
        #[arg(long, value_name = "ETHER", default_value_t = 0)]
        fund_members: u64,
    },
    /// Register a gateway (its id, anchor address and location) in the
    /// GatewayRegistry; the paying account must hold the registrar role.
    Register {
        #[command(flatten)]
        rpc: Rpc,
        #[command(flatten)]
        payer: Payer,
        /// The GatewayRegistry contract.
        #[arg(long, value_name = "ADDR")]
        registry: Address,
        /// The gateway's key file (gives its id and anchor address).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["gateway_id", "anchor_address"])]
        gateway: Option<PathBuf>,
        /// The gateway id ("12D3KooW…"), when its key file is elsewhere.
        #[arg(long, value_name = "ID", requires = "anchor_address")]
        gateway_id: Option<GatewayId>,
        /// The gateway's anchor address, with --gateway-id.
        #[arg(long, value_name = "ADDR", requires = "gateway_id")]
        anchor_address: Option<Address>,
        /// The gateway's H3 cell (hex).
        #[arg(long, value_name = "CELL", value_parser = parse_cell)]
        location: u64,
        /// The account that receives its rewards. Default: its anchor address.
        #[arg(long, value_name = "ADDR")]
        owner: Option<Address>,
    },
    /// Register an energy meter (its id and rated capacity) in the
    /// GatewayRegistry; the paying account must hold the registrar role.
    /// Gateways reading the registry from the chain accept its readings.
    RegisterMeter {
        #[command(flatten)]
        rpc: Rpc,
        #[command(flatten)]
        payer: Payer,
        /// The GatewayRegistry contract.
        #[arg(long, value_name = "ADDR")]
        registry: Address,
        /// The meter id (its ed25519 public key, as `meshd` prints ids).
        #[arg(long, value_name = "ID")]
        meter: MeterId,
        /// Its rated capacity, W.
        #[arg(long, value_name = "W")]
        rated_watts: u64,
        /// The account that receives its certificates.
        #[arg(long, value_name = "ADDR")]
        owner: Address,
    },
    /// Claim the reward a `reward` proof proves from the RewardDistributor;
    /// the tokens go to the gateway's registered owner.
    Claim {
        /// The proof file.
        #[arg(value_name = "PROOF")]
        proof: PathBuf,
        #[command(flatten)]
        rpc: Rpc,
        /// The RewardDistributor contract.
        #[arg(long, value_name = "ADDR")]
        contract: Address,
        #[command(flatten)]
        payer: Payer,
    },
    /// Mint the energy certificates an `energy` proof earns from the
    /// EnergyCertificate contract; they go to the meter's registered owner.
    Mint {
        /// The proof file.
        #[arg(value_name = "PROOF")]
        proof: PathBuf,
        #[command(flatten)]
        rpc: Rpc,
        /// The EnergyCertificate contract.
        #[arg(long, value_name = "ADDR")]
        contract: Address,
        #[command(flatten)]
        payer: Payer,
    },
}

/// Where a proof's summaries come from.
#[derive(Debug, Args)]
pub struct Source {
    /// The gateway's store directory (`storage.path`); stop the daemon first (sled locks it).
    #[arg(long, value_name = "DIR")]
    store: PathBuf,
    /// The region's H3 cell (hex).
    #[arg(long, value_name = "CELL", value_parser = parse_cell)]
    region: u64,
    /// The epoch of the summary holding the item.
    #[arg(long)]
    epoch: u64,
    /// The anchoring period (`network.anchor_every_epochs`), used when the
    /// store has no anchor record covering the epoch.
    #[arg(long, value_name = "EPOCHS")]
    anchor_every: Option<u64>,
    /// Write the proof here instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// `meshd prove …`.
#[derive(Debug, Subcommand)]
pub enum ProveCommand {
    /// An accepted report: its id under the summary's reports root.
    Report {
        #[command(flatten)]
        source: Source,
        /// The report id (0x and 64 hex digits).
        #[arg(long, value_name = "ID")]
        report_id: Hash32,
    },
    /// A gateway's reward units under the summary's rewards root.
    Reward {
        #[command(flatten)]
        source: Source,
        /// The gateway ("12D3KooW…").
        #[arg(long, value_name = "ID")]
        id: GatewayId,
    },
    /// A meter's energy (Wh) under the summary's energy root.
    Energy {
        #[command(flatten)]
        source: Source,
        /// The meter ("12D3KooW…" or 0x and 64 hex digits).
        #[arg(long, value_name = "ID")]
        id: MeterId,
    },
}

impl ProveCommand {
    fn source(&self) -> &Source {
        match self {
            ProveCommand::Report { source, .. }
            | ProveCommand::Reward { source, .. }
            | ProveCommand::Energy { source, .. } => source,
        }
    }
}

fn parse_cell(text: &str) -> Result<u64, String> {
    u64::from_str_radix(text.strip_prefix("0x").unwrap_or(text), 16)
        .map_err(|_| format!("`{text}` is not an H3 cell index in hex (e.g. 8a2a1072b59ffff)"))
}

/// Runs a chain command to its end on a runtime of its own.
pub fn run(command: Command) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(execute(command))
}

async fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Chain(ChainCommand::Deploy {
            rpc,
            payer,
            members,
            locations,
            epoch_seconds,
            mint_window_epochs,
            fund_members,
        }) => {
            if locations.len() != 1 && locations.len() != members.len() {
                bail!(
                    "{} --location values for {} --member files; fix: give one location for all members, \
                     or one per member in the same order",
                    locations.len(),
                    members.len()
                );
            }
            let mut committee = Vec::new();
            for (i, path) in members.iter().enumerate() {
                let location = locations[i.min(locations.len() - 1)];
                let keys = keys::read(path)?;
                let anchor = keys.anchor.address();
                committee.push(CommitteeMember {
                    gateway_id: keys.identity.gateway_id().0,
                    owner: anchor,
                    anchor_address: anchor,
                    location,
                });
            }
            let config = DevDeployConfig {
                committee,
                epoch_seconds,
                mint_window_epochs,
                ..DevDeployConfig::default()
            };
            let url = rpc.url.clone();
            let signer = payer.signer()?;
            let d = meshd_chain::deploy_dev(rpc.url.clone(), signer.clone(), &config)
                .await
                .with_context(|| format!("deploying to {url}"))?;
            if fund_members > 0 {
                let provider =
                    ProviderBuilder::new().wallet(EthereumWallet::from(signer)).connect_http(rpc.url);
                let wei = U256::from(fund_members) * U256::from(10u64).pow(U256::from(18u64));
                for member in &config.committee {
                    let to = Address::from(member.anchor_address.0);
                    let request = TransactionRequest::default().with_to(to).with_value(wei);
                    provider
                        .send_transaction(request)
                        .await
                        .with_context(|| format!("funding {to}"))?
                        .get_receipt()
                        .await
                        .with_context(|| format!("funding {to}"))?;
                }
            }
            println!("registry:      {}", d.registry);
            println!("anchor:        {}", d.anchor);
            println!("token:         {}", d.token);
            println!("distributor:   {}", d.distributor);
            println!("certificate:   {}", d.certificate);
            println!("committee:     {} members", members.len());
            if fund_members > 0 {
                println!("funded:        {fund_members} ether to each member's anchor account");
            }
            println!();
            println!("[chain]");
            println!("rpc_url = \"{url}\"");
            println!("chain_id = {}", d.chain_id);
            println!("anchor_contract = \"{}\"", d.anchor);
            println!("registry_contract = \"{}\"", d.registry);
        }
        Command::Chain(ChainCommand::RegisterMeter { rpc, payer, registry, meter, rated_watts, owner }) => {
            let provider =
                ProviderBuilder::new().wallet(EthereumWallet::from(payer.signer()?)).connect_http(rpc.url);
            let contract = GatewayRegistry::new(registry, provider);
            let receipt = contract
                .registerMeter(B256::from(meter.0), owner, rated_watts)
                .send()
                .await
                .map_err(|e| anyhow!("GatewayRegistry.registerMeter refused {meter}: {}", revert_reason(&e)))?
                .get_receipt()
                .await
                .context("waiting for the registration's receipt")?;
            if !receipt.status() {
                bail!(
                    "the registration of meter {meter} reverted in transaction {}",
                    receipt.transaction_hash
                );
            }
            println!("registered meter {meter} ({rated_watts} W, owner {owner})");
        }
        Command::Chain(ChainCommand::Register {
            rpc,
            payer,
            registry,
            gateway,
            gateway_id,
            anchor_address,
            location,
            owner,
        }) => {
            let (id, anchor) = match (gateway, gateway_id, anchor_address) {
                (Some(path), _, _) => {
                    let keys = keys::read(&path)?;
                    (keys.identity.gateway_id(), Address::from(keys.anchor.address().0))
                }
                (None, Some(id), Some(anchor)) => (id, anchor),
                _ => bail!(
                    "name the gateway: --gateway KEYFILE, or --gateway-id ID with --anchor-address ADDR"
                ),
            };
            let owner = owner.unwrap_or(anchor);
            let provider =
                ProviderBuilder::new().wallet(EthereumWallet::from(payer.signer()?)).connect_http(rpc.url);
            let contract = GatewayRegistry::new(registry, provider);
            let receipt = contract
                .registerGateway(B256::from(id.0), owner, anchor, location)
                .send()
                .await
                .map_err(|e| anyhow!("GatewayRegistry.registerGateway refused {id}: {}", revert_reason(&e)))?
                .get_receipt()
                .await
                .context("waiting for the registration's receipt")?;
            if !receipt.status() {
                bail!("the registration of {id} reverted in transaction {}", receipt.transaction_hash);
            }
            println!("registered {id} (anchor address {anchor}, owner {owner}, location {location:x})");
            println!(
                "transaction {} in block {}",
                receipt.transaction_hash,
                receipt.block_number.unwrap_or_default()
            );
        }
        Command::Chain(ChainCommand::Claim { proof, rpc, contract, payer }) => {
            let proof = read_proof(&proof)?;
            let sent = proof::claim(rpc.url, contract, payer.signer()?, &proof)
                .await
                .map_err(|e| anyhow!("claim failed: {}", chain_error(&e)))?;
            println!("claimed in transaction {} (block {}, gas {})", sent.tx, sent.block, sent.gas_used);
        }
        Command::Chain(ChainCommand::Mint { proof, rpc, contract, payer }) => {
            let proof = read_proof(&proof)?;
            let sent = proof::mint(rpc.url, contract, payer.signer()?, &proof)
                .await
                .map_err(|e| anyhow!("mint failed: {}", chain_error(&e)))?;
            println!("minted in transaction {} (block {}, gas {})", sent.tx, sent.block, sent.gas_used);
        }
        Command::Prove(prove) => {
            let store = open_store(&prove.source().store)?;
            let settled = settlement(&store, prove.source())?;
            let (source, item, leaves): (_, _, Vec<Hash32>) = match prove {
                ProveCommand::Report { source, report_id } => {
                    let leaves = settled.report_ids.iter().map(merkle::report_leaf).collect();
                    (source, Item::Report { report_id }, leaves)
                }
                ProveCommand::Reward { source, id } => {
                    let list = &settled.rewards;
                    let leaves = list.iter().map(|(g, u)| merkle::reward_leaf(g, *u)).collect();
                    let units = amount_of(list, &id, "rewarded no units to gateway", &source)?;
                    (source, Item::Reward { gateway_id: Hash32(id.0), units }, leaves)
                }
                ProveCommand::Energy { source, id } => {
                    let list = &settled.energy;
                    let leaves = list.iter().map(|(m, wh)| merkle::energy_leaf(m, *wh)).collect();
                    let wh = amount_of(list, &id, "credited no energy to meter", &source)?;
                    (source, Item::Energy { meter_id: Hash32(id.0), wh }, leaves)
                }
            };
            let proof = prove_from_store(&store, &source, item, &leaves)?;
            let json = serde_json::to_string_pretty(&proof)? + "\n";
            match &source.out {
                Some(path) => {
                    fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!("wrote {}", path.display());
                }
                None => print!("{json}"),
            }
        }
        Command::Verify { proof, rpc, contract } => {
            let proof = read_proof(&proof)?;
            let root = proof::verify_on_chain(rpc.url, contract, &proof)
                .await
                .map_err(|e| anyhow!("the proof does not verify: {}", chain_error(&e)))?;
            let what = match proof.item {
                Item::Report { report_id } => format!("report {report_id}"),
                Item::Reward { gateway_id, units } => {
                    format!("reward of {} units to {}", units, GatewayId(gateway_id.0))
                }
                Item::Energy { meter_id, wh } => format!("{wh} Wh of meter {}", MeterId(meter_id.0)),
            };
            println!(
                "OK {what} in region {:x} epoch {} is under root {root} anchored for {}",
                proof.summary.region,
                proof.summary.epoch,
                proof.epoch_range()
            );
        }
    }
    Ok(())
}

fn open_store(path: &Path) -> anyhow::Result<SledStore> {
    if !path.is_dir() {
        bail!("no store at {}; fix: give the gateway's storage.path", path.display());
    }
    SledStore::open(path, Options::default()).with_context(|| {
        format!("cannot open the store at {} (is the daemon running on it?)", path.display())
    })
}

/// The proof of `item` in `source`'s summary under the root anchored for its
/// range. The leaves come from the store's anchor set (every region's
/// summaries the gateway signed the root over); a store without one (a
/// gateway off the anchor committee) rebuilds the range from its own
/// region's summaries, which is the anchored tree only when one region
/// anchors: `meshd verify` tells.
fn prove_from_store(
    store: &SledStore,
    source: &Source,
    item: Item,
    leaves: &[Hash32],
) -> anyhow::Result<Proof> {
    let region = Region(source.region);
    if let Some(set) = store.anchor_set_covering(source.epoch)? {
        let range = EpochRange { from: set.from_epoch, to: set.to_epoch };
        let summaries: Vec<SummaryLeaf> = set.leaves.iter().map(SummaryLeaf::from_anchored).collect();
        let proof = Proof::build_over(range, &summaries, source.region, source.epoch, item, leaves)
            .with_context(|| {
                format!(
                    "the root signed for {range} does not cover region {:x} epoch {} (it was not certified in \
                     time); fix: prove from the store of a gateway whose signed root covers it",
                    source.region, source.epoch
                )
            })?;
        return Ok(proof);
    }
    let range = match store.anchor_covering(source.epoch)? {
        Some(anchor) => EpochRange { from: anchor.start_epoch, to: anchor.end_epoch - 1 },
        None => {
            let every = source.anchor_every.filter(|a| *a > 0).ok_or_else(|| {
                anyhow!(
                    "the store has no anchor covering epoch {}; fix: pass --anchor-every with the network's \
                     anchor_every_epochs",
                    source.epoch
                )
            })?;
            let from = source.epoch - source.epoch % every;
            EpochRange { from, to: from + every - 1 }
        }
    };
    let mut summaries = Vec::new();
    for epoch in range.from..=range.to {
        let finalized = store.summary(region, epoch)?.ok_or_else(|| {
            anyhow!("the store has no finalized summary of region {:x} epoch {epoch} ({range})", region.0)
        })?;
        summaries.push(finalized.summary);
    }
    let proof = Proof::build(range, &summaries, source.epoch, item, leaves)?;
    if let Some(anchor) = store.anchor_covering(source.epoch)?
        && anchor.root != proof.anchored_root
    {
        bail!(
            "the summaries rebuild root {} but the store's anchor of {range} is {}; fix: prove from the store \
             of a gateway on the anchor committee (it keeps every region's summary leaves)",
            proof.anchored_root,
            anchor.root
        );
    }
    Ok(proof)
}

fn read_proof(path: &Path) -> anyhow::Result<Proof> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read the proof {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a meshd proof (docs/chain.md §12)", path.display()))
}

/// What the store kept of the decided summary of `source`'s region and epoch.
fn settlement(store: &SledStore, source: &Source) -> anyhow::Result<Settlement> {
    let region = Region(source.region);
    if let Some(settled) = store.settlement(region, source.epoch)? {
        return Ok(settled);
    }
    match store.summary(region, source.epoch)? {
        None => bail!(
            "the store has no finalized summary of region {:x} epoch {}; fix: check the region and \
             epoch, or wait until the epoch is final",
            source.region,
            source.epoch
        ),
        Some(_) => bail!(
            "the store has the summary of region {:x} epoch {} but not what it settled: only a committee \
             member that judged the decided proposal keeps that; fix: prove from such a member's store",
            source.region,
            source.epoch
        ),
    }
}

/// The amount of `id` in a settlement's list.
fn amount_of<Id: PartialEq + std::fmt::Display>(
    list: &[(Id, u64)],
    id: &Id,
    missing: &str,
    source: &Source,
) -> anyhow::Result<u64> {
    list.iter()
        .find(|(i, _)| i == id)
        .map(|(_, amount)| *amount)
        .ok_or_else(|| anyhow!("epoch {} of region {:x} {missing} {id}", source.epoch, source.region))
}

fn revert_reason(error: &alloy::contract::Error) -> String {
    use alloy::sol_types::SolInterface;
    use meshd_chain::bindings::registry::GatewayRegistry::GatewayRegistryErrors;
    match error.as_revert_data().and_then(|data| GatewayRegistryErrors::abi_decode(&data).ok()) {
        Some(decoded) => format!("{decoded:?}"),
        None => error.to_string(),
    }
}

fn chain_error(error: &proof::ChainProofError) -> String {
    use alloy::sol_types::SolInterface;
    use meshd_chain::bindings::certificate::EnergyCertificate::EnergyCertificateErrors;
    use meshd_chain::bindings::distributor::RewardDistributor::RewardDistributorErrors;
    if let proof::ChainProofError::Call { operation, source } = error
        && let Some(data) = source.as_revert_data()
    {
        if let Ok(decoded) = RewardDistributorErrors::abi_decode(&data) {
            return format!("{operation} reverted: {decoded:?}");
        }
        if let Ok(decoded) = EnergyCertificateErrors::abi_decode(&data) {
            return format!("{operation} reverted: {decoded:?}");
        }
    }
    error.to_string()
}
