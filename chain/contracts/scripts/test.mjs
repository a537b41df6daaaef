// End-to-end tests of the meshd contracts on a local anvil (127.0.0.1 only):
// deploys the committed artifacts, anchors with committees of 4, 31 and 64,
// claims a reward, mints, transfers and retires certificates, and prints the
// gas of each. Exits 1 when a check fails.
//
//   node scripts/test.mjs       (after setup.sh; chain/contracts/test.sh wraps it)

import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import assert from "node:assert/strict";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(join(root, "package.json"));
const { ethers } = require("ethers");
const { StandardMerkleTree } = require("@openzeppelin/merkle-tree");

const ANVIL = join(root, "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
/** anvil's first default account (public test mnemonic), the deployer and admin. */
const ADMIN_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/** Gateways registered: enough for the largest committee measured. */
const GATEWAYS = 64;
/** Epoch length given to EnergyCertificate, s: one hour, so a meter of W watts may attest W Wh. */
const EPOCH_SECONDS = 3600;
/** Mint window given to EnergyCertificate, epochs. */
const MINT_WINDOW = 100;
/** Leaf types, as docs/chain.md defines them. */
const SUMMARY_TYPES = ["uint64", "uint64", "bytes32", "bytes32", "bytes32", "bytes32"];
const AMOUNT_TYPES = ["bytes32", "uint256"];
const REGION = 0x8a2a1072b59ffffn;

const artifact = (name) => JSON.parse(readFileSync(join(root, "artifacts", name + ".json"), "utf8"));
const ARTIFACTS = ["GatewayRegistry", "EpochAnchor", "RewardDistributor", "EnergyCertificate", "test/TestToken"].map(
  artifact,
);
/** Every custom error of every contract, to name the revert of a nested call too. */
const ERRORS = new ethers.Interface(
  [...new Map(ARTIFACTS.flatMap((a) => a.abi.filter((e) => e.type === "error")).map((e) => [e.name, e])).values()],
);

const id = (label) => ethers.keccak256(ethers.toUtf8Bytes(label));

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

async function startAnvil() {
  const port = await freePort();
  const child = spawn(ANVIL, ["--host", "127.0.0.1", "--port", String(port), "--hardfork", "cancun", "--accounts", "4"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error("anvil did not start in 20 s")), 20000);
    child.stdout.on("data", (d) => {
      out += d;
      if (out.includes("Listening on")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on("exit", (code) => reject(new Error(`anvil exited with ${code}`)));
  });
  child.stdout.resume();
  return { child, url: `http://127.0.0.1:${port}` };
}

// ------------------------------------------------------------------ harness

const results = { passed: 0, failed: 0 };
const gas = {};

async function check(name, fn) {
  try {
    await fn();
    results.passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    results.failed++;
    console.log(`FAIL ${name}\n     ${String(e.stack ?? e).slice(0, 600).split("\n").slice(0, 4).join("\n     ")}`);
  }
}

let provider;

/** Sends a transaction and returns its receipt (anvil mines each at once). */
async function send(promise) {
  const tx = await promise;
  let receipt = null;
  for (let i = 0; i < 500 && !receipt; i++) {
    receipt = await provider.getTransactionReceipt(tx.hash);
    if (!receipt) await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(receipt, `no receipt for ${tx.hash} after 10 s`);
  assert.equal(receipt.status, 1, "transaction reverted");
  return receipt;
}

/** Asserts that the call reverts with custom error `name` (and `args`, when given). */
async function reverts(promise, name, args) {
  let error;
  try {
    await send(promise);
  } catch (e) {
    error = e;
  }
  assert.ok(error, `expected revert ${name}, but it succeeded`);
  const data = error.data ?? error.info?.error?.data ?? error.error?.data;
  assert.ok(data && data !== "0x", `expected revert ${name}, got ${error.shortMessage ?? error.message}`);
  const decoded = ERRORS.parseError(data);
  assert.equal(decoded?.name, name, `expected revert ${name}, got ${decoded?.name ?? data}`);
  if (args) assert.deepEqual([...decoded.args].map(String), args.map(String));
}

// ------------------------------------------------------------------- domain

/** The EIP-712 anchor digest computed independently of the contract, as docs/chain.md defines it. */
function anchorDigest(chainId, verifyingContract, fromEpoch, toEpoch, root) {
  const domain = { name: "meshd EpochAnchor", version: "1", chainId, verifyingContract };
  const types = { Anchor: [{ name: "fromEpoch", type: "uint64" }, { name: "toEpoch", type: "uint64" }, { name: "root", type: "bytes32" }] };
  return ethers.TypedDataEncoder.hash(domain, types, { fromEpoch, toEpoch, root });
}

function committeeDigest(chainId, verifyingContract, version, startEpoch, members) {
  const domain = { name: "meshd EpochAnchor", version: "1", chainId, verifyingContract };
  const types = {
    Committee: [
      { name: "version", type: "uint32" },
      { name: "startEpoch", type: "uint64" },
      { name: "members", type: "address[]" },
    ],
  };
  return ethers.TypedDataEncoder.hash(domain, types, { version, startEpoch, members });
}

const byAddress = (a, b) => (BigInt(a.address) < BigInt(b.address) ? -1 : 1);

/** `signers` (wallets) sign `digest`: returns sorted addresses and packed 65-byte signatures. */
function sign(wallets, digest) {
  const sorted = [...wallets].sort(byAddress);
  return {
    signers: sorted.map((w) => w.address),
    signatures: ethers.concat(sorted.map((w) => w.signingKey.sign(digest).serialized)),
  };
}

/** One region's summary of one epoch, with its three inner trees. */
function makeSummary(epoch, rewards, energy, reports) {
  const rewardTree = StandardMerkleTree.of(rewards, AMOUNT_TYPES);
  const energyTree = StandardMerkleTree.of(energy, AMOUNT_TYPES);
  const reportTree = StandardMerkleTree.of(reports.map((r) => [r]), ["bytes32"]);
  const fields = {
    region: REGION,
    epoch: BigInt(epoch),
    summaryHash: id(`summary ${epoch}`),
    reportsRoot: reportTree.root,
    rewardsRoot: rewardTree.root,
    energyRoot: energyTree.root,
  };
  return { fields, rewardTree, energyTree };
}

function anchorTree(summaries) {
  return StandardMerkleTree.of(
    summaries.map((s) => [s.fields.region, s.fields.epoch, s.fields.summaryHash, s.fields.reportsRoot, s.fields.rewardsRoot, s.fields.energyRoot]),
    SUMMARY_TYPES,
  );
}

const proofOf = (tree, first) => {
  for (const [i, v] of tree.entries()) if (v[0] === first || v[1] === first) return tree.getProof(i);
  throw new Error("no leaf " + first);
};

// --------------------------------------------------------------------- main

async function main() {
  const { child, url } = await startAnvil();
  try {
    provider = new ethers.JsonRpcProvider(url, undefined, { staticNetwork: true, pollingInterval: 50, cacheTimeout: -1 });
    const chainId = (await provider.getNetwork()).chainId;
    const admin = new ethers.Wallet(ADMIN_KEY, provider);
    const fund = async (address) => send(admin.sendTransaction({ to: address, value: ethers.parseEther("1") }));
    const deploy = async (a, ...args) => {
      const c = await new ethers.ContractFactory(a.abi, a.bytecode, admin).deploy(...args);
      await c.waitForDeployment();
      return c;
    };
    const [registryA, anchorA, distributorA, certificateA, tokenA] = ARTIFACTS;

    const registry = await deploy(registryA, await admin.getAddress());
    const anchor = await deploy(anchorA, await admin.getAddress(), await registry.getAddress());
    const token = await deploy(tokenA, 10n ** 15n);
    const distributor = await deploy(distributorA, await anchor.getAddress(), await registry.getAddress(), await token.getAddress(), 1);
    const certificate = await deploy(certificateA, await anchor.getAddress(), await registry.getAddress(), EPOCH_SECONDS, MINT_WINDOW, "");
    await send(token.transfer(await distributor.getAddress(), 10n ** 14n));
    const anchorAddress = await anchor.getAddress();

    // Gateways: deterministic anchor keys and owners.
    const keys = Array.from({ length: GATEWAYS }, (_, i) => new ethers.Wallet(id(`anchor key ${i}`), provider));
    const owners = Array.from({ length: GATEWAYS }, (_, i) => new ethers.Wallet(id(`owner ${i}`), provider));
    const gatewayIds = Array.from({ length: GATEWAYS }, (_, i) => id(`gateway ${i}`));
    const outsider = new ethers.Wallet(id("not a gateway"), provider);

    await check("registry: registrar registers gateways and meters, owners transfer, duplicates refused", async () => {
      for (let i = 0; i < GATEWAYS; i++) {
        await send(registry.registerGateway(gatewayIds[i], owners[i].address, keys[i].address, 0x8a2a1072b59ffffn + BigInt(i)));
      }
      const g = await registry.gateway(gatewayIds[5]);
      assert.equal(g.owner, owners[5].address);
      assert.equal(g.anchorAddress, keys[5].address);
      assert.equal(await registry.gatewayOfAnchor(keys[5].address), gatewayIds[5]);
      await reverts(registry.registerGateway(gatewayIds[5], owners[5].address, outsider.address, 1), "GatewayExists");
      await reverts(registry.registerGateway(id("x"), owners[5].address, keys[6].address, 1), "AnchorAddressInUse");
      const stranger = registry.connect(new ethers.Wallet(id("stranger"), provider));
      await reverts(stranger.registerGateway(id("y"), owners[5].address, outsider.address, 1), "AccessControlUnauthorizedAccount");
      await send(registry.registerMeter(id("meter 0"), owners[0].address, 3_000_000));
      await send(registry.registerMeter(id("meter 1"), owners[1].address, 1_000));
      await reverts(registry.registerMeter(id("meter 0"), owners[0].address, 1), "MeterExists");
      await reverts(registry.registerMeter(id("meter 2"), owners[0].address, 0), "ZeroCapacity");
      // An owner hands its gateway over and back.
      await fund(owners[3].address);
      await fund(owners[4].address);
      await send(registry.connect(owners[3]).transferGateway(gatewayIds[3], owners[4].address));
      await reverts(registry.connect(owners[3]).transferGateway(gatewayIds[3], owners[3].address), "NotOwner");
      await send(registry.connect(owners[4]).transferGateway(gatewayIds[3], owners[3].address));
      // Removing a gateway frees its anchor address; updating moves it.
      const spare = new ethers.Wallet(id("spare anchor key"), provider);
      await send(registry.registerGateway(id("spare"), owners[0].address, spare.address, 1));
      await reverts(registry.updateGateway(id("spare"), keys[1].address, 2), "AnchorAddressInUse");
      await send(registry.updateGateway(id("spare"), outsider.address, 2));
      assert.equal(await registry.gatewayOfAnchor(spare.address), ethers.ZeroHash);
      await send(registry.removeGateway(id("spare")));
      assert.equal(await registry.gatewayOfAnchor(outsider.address), ethers.ZeroHash);
      await reverts(registry.gatewayOwner(id("spare")), "UnknownGateway");
    });

    const c4 = keys.slice(0, 4).sort(byAddress);
    const c31 = keys.slice(4, 35).sort(byAddress);
    const c64 = keys.slice(0, 64).sort(byAddress);

    await check("committee: manager installs the first committee; bad member lists refused", async () => {
      await reverts(anchor.scheduleCommittee(0, [c4[1].address, c4[0].address]), "MembersNotAscending");
      await reverts(anchor.scheduleCommittee(0, [outsider.address]), "NotRegisteredAnchor");
      await reverts(anchor.scheduleCommittee(0, []), "InvalidCommitteeSize");
      await reverts(anchor.connect(outsider).scheduleCommittee(0, [c4[0].address]), "AccessControlUnauthorizedAccount");
      await reverts(anchor.rotateCommittee(0, [c4[0].address], [], "0x"), "NoCommittee");
      await send(anchor.scheduleCommittee(0, c4.map((w) => w.address)));
      assert.equal(await anchor.lastVersion(), 1n);
      assert.deepEqual([...(await anchor.committee())].map(Number), [0, 0, 1, 4, 0]);
      for (const [n, q] of [[1, 1], [2, 2], [3, 2], [4, 3], [7, 5], [10, 7], [31, 21], [64, 43], [128, 86]]) {
        assert.equal(await anchor.quorum(n), BigInt(q), `quorum(${n})`);
      }
    });

    // Epochs 0..=3 of one region: rewards for three gateways, energy for two meters.
    const summaries0 = [0, 1, 2, 3].map((e) =>
      makeSummary(
        e,
        [[gatewayIds[0], 5_000_000n + BigInt(e)], [gatewayIds[1], 1_250_000n], [gatewayIds[2], 800_000n]],
        [[id("meter 0"), [2_700_000n, 500_000n, 100_000n, 900_000n][e]], [id("meter 1"), 2_000_000n]],
        [id(`report ${e} a`), id(`report ${e} b`)],
      ),
    );
    const tree0 = anchorTree(summaries0);

    await check("docs/chain.md test vectors: EIP-712 digest, signature and summary leaf", async () => {
      const verifying = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
      const root = id("meshd test root");
      const digest = anchorDigest(31337, verifying, 0, 3, root);
      assert.equal(digest, "0x896f3f3eac82203e4cee025b2066ac792a0f8ef92c00f2c612ca17c4628ee0ed");
      const key = new ethers.Wallet("0x" + "01".padStart(64, "0"));
      assert.equal(
        key.signingKey.sign(digest).serialized,
        "0x42ef7e44d0583a3a204523cf906199d950a0a9ff105db4596bf826e7b216554d2db9e3e06501323774c6f27d738dee74d9c31745aeebd94081059f7a978e88f11b",
      );
      const leaf = [REGION, 1n, id("summary"), id("reports"), id("rewards"), id("energy")];
      assert.equal(
        StandardMerkleTree.of([leaf], SUMMARY_TYPES).leafHash(leaf),
        "0x4909ece1013ca661a2ecb5455cea76107c62e84bcd0a5fd1335c6896f310c6af",
      );
      assert.equal(id("Committee(uint32 version,uint64 startEpoch,address[] members)"), await anchor.COMMITTEE_TYPEHASH());
    });

    await check("anchor: digest matches docs/chain.md (EIP-712 computed off-chain)", async () => {
      const digest = await anchor.anchorDigest(0, 3, tree0.root);
      assert.equal(digest, anchorDigest(chainId, anchorAddress, 0, 3, tree0.root));
      const [, name, version, cid, contract] = await anchor.eip712Domain();
      assert.deepEqual([name, version, cid, contract], ["meshd EpochAnchor", "1", chainId, anchorAddress]);
      assert.equal(await anchor.ANCHOR_TYPEHASH(), id("Anchor(uint64 fromEpoch,uint64 toEpoch,bytes32 root)"));
    });

    await check("anchor: 3 of 4 committee signatures anchor epochs 0..=3", async () => {
      const { signers, signatures } = sign(c4.slice(0, 3), anchorDigest(chainId, anchorAddress, 0, 3, tree0.root));
      const submitter = anchor.connect(outsider);
      await fund(outsider.address);
      const receipt = await send(submitter.anchor(0, 3, tree0.root, signers, signatures));
      gas["anchor, committee 4 (3 signatures)"] = receipt.gasUsed;
      assert.equal(await anchor.rootOf(0, 3), tree0.root);
      assert.equal(await anchor.nextEpoch(), 4n);
      const log = anchor.interface.parseLog(receipt.logs.at(-1));
      assert.equal(log.name, "Anchored");
      assert.deepEqual([...log.args].map(String), ["0", "3", tree0.root, "1"]);
    });

    const root47 = id("root 4..=7");
    const digest47 = anchorDigest(chainId, anchorAddress, 4, 7, root47);

    await check("anchor: short quorum, duplicate or unordered signer, forged signature, outsider refused", async () => {
      let s = sign(c4.slice(0, 2), digest47);
      await reverts(anchor.anchor(4, 7, root47, s.signers, s.signatures), "QuorumNotReached", [2, 3]);
      s = sign([c4[0], c4[1]], digest47);
      const dup = sign([c4[0]], digest47);
      await reverts(
        anchor.anchor(4, 7, root47, [s.signers[0], s.signers[1], s.signers[1]], ethers.concat([s.signatures, ethers.dataSlice(s.signatures, 65)])),
        "SignersNotAscending",
        [2, s.signers[1]],
      );
      await reverts(
        anchor.anchor(4, 7, root47, [dup.signers[0], dup.signers[0], dup.signers[0]], ethers.concat([dup.signatures, dup.signatures, dup.signatures])),
        "SignersNotAscending",
      );
      s = sign(c4.slice(0, 3), digest47);
      const reversed = [...s.signers].reverse();
      const reversedSignatures = ethers.concat([2, 1, 0].map((i) => ethers.dataSlice(s.signatures, 65 * i, 65 * i + 65)));
      await reverts(anchor.anchor(4, 7, root47, reversed, reversedSignatures), "SignersNotAscending", [1, reversed[1]]);
      // Signer 1's slot holds signer 2's signature.
      const forged = ethers.concat([ethers.dataSlice(s.signatures, 0, 65), ethers.dataSlice(s.signatures, 130, 195), ethers.dataSlice(s.signatures, 130, 195)]);
      await reverts(anchor.anchor(4, 7, root47, s.signers, forged), "InvalidSignature", [1, s.signers[1]]);
      // A signature of another root.
      const other = sign(c4.slice(0, 3), anchorDigest(chainId, anchorAddress, 4, 7, id("other")));
      await reverts(anchor.anchor(4, 7, root47, other.signers, other.signatures), "InvalidSignature");
      // A registered gateway outside the committee.
      s = sign([...c4.slice(0, 2), keys[10]], digest47);
      await reverts(anchor.anchor(4, 7, root47, s.signers, s.signatures), "NotCommitteeMember");
      await reverts(anchor.anchor(4, 7, root47, s.signers, "0x1234"), "SignaturesLengthMismatch");
      // The malleable twin of a valid signature (s' = n − s, v flipped) is refused.
      s = sign(c4.slice(0, 3), digest47);
      const sig0 = ethers.Signature.from(ethers.dataSlice(s.signatures, 0, 65));
      const n = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
      const twin = ethers.concat([sig0.r, ethers.toBeHex(n - BigInt(sig0.s), 32), sig0.v === 27 ? "0x1c" : "0x1b"]);
      await reverts(anchor.anchor(4, 7, root47, s.signers, ethers.concat([twin, ethers.dataSlice(s.signatures, 65)])), "InvalidSignature", [0, s.signers[0]]);
    });

    await check("anchor: replay, overlap, empty root and inverted range refused", async () => {
      const s = sign(c4.slice(0, 3), anchorDigest(chainId, anchorAddress, 0, 3, tree0.root));
      await reverts(anchor.anchor(0, 3, tree0.root, s.signers, s.signatures), "AlreadyAnchored", [0, 3]);
      const o = sign(c4.slice(0, 3), anchorDigest(chainId, anchorAddress, 2, 5, root47));
      await reverts(anchor.anchor(2, 5, root47, o.signers, o.signatures), "RangeOverlaps", [2, 4]);
      await reverts(anchor.anchor(3, 3, root47, o.signers, o.signatures), "RangeOverlaps", [3, 4]);
      await reverts(anchor.anchor(4, 7, ethers.ZeroHash, o.signers, o.signatures), "EmptyRoot");
      await reverts(anchor.anchor(7, 4, root47, o.signers, o.signatures), "InvalidRange");
    });

    await check("committee: a committee of 31 takes over at epoch 4; the old one can no longer anchor", async () => {
      await reverts(anchor.scheduleCommittee(3, c31.map((w) => w.address)), "CommitteeStartsInPast", [3, 4]);
      await send(anchor.scheduleCommittee(4, c31.map((w) => w.address)));
      const old = sign(c4.slice(0, 3), digest47);
      await reverts(anchor.anchor(4, 7, root47, old.signers, old.signatures), "QuorumNotReached", [3, 21]);
      const mixed = sign([...c31.slice(0, 20), c4[0]], digest47);
      await reverts(anchor.anchor(4, 7, root47, mixed.signers, mixed.signatures), "NotCommitteeMember", [c4[0].address, 2]);
      const short = sign(c31.slice(0, 20), digest47);
      await reverts(anchor.anchor(4, 7, root47, short.signers, short.signatures), "QuorumNotReached", [20, 21]);
      const s = sign(c31.slice(0, 21), digest47);
      const receipt = await send(anchor.anchor(4, 7, root47, s.signers, s.signatures));
      gas["anchor, committee 31 (21 signatures, activates the committee)"] = receipt.gasUsed;
      const root811 = id("root 8..=8");
      const t = sign(c31.slice(5, 26), anchorDigest(chainId, anchorAddress, 8, 8, root811));
      const r2 = await send(anchor.anchor(8, 8, root811, t.signers, t.signatures));
      gas["anchor, committee 31 (21 signatures)"] = r2.gasUsed;
    });

    await check("committee: the 31 hand over to 64 by a quorum signature; the handover cannot be replayed", async () => {
      const members = c64.map((w) => w.address);
      const version = (await anchor.lastVersion()) + 1n;
      const digest = committeeDigest(chainId, anchorAddress, version, 9, members);
      assert.equal(await anchor.committeeDigest(version, 9, members), digest);
      const s = sign(c31.slice(0, 21), digest);
      await send(anchor.rotateCommittee(9, members, s.signers, s.signatures));
      await reverts(anchor.rotateCommittee(9, members, s.signers, s.signatures), "InvalidSignature");
      assert.equal((await anchor.committeeInfo(version)).size, 64n);
    });

    await check("anchor: 43 of 64 signatures anchor; 42 do not", async () => {
      const root = id("root 9..=12");
      const digest = anchorDigest(chainId, anchorAddress, 9, 12, root);
      const short = sign(c64.slice(0, 42), digest);
      await reverts(anchor.anchor(9, 12, root, short.signers, short.signatures), "QuorumNotReached", [42, 43]);
      const s = sign(c64.slice(10, 53), digest);
      const receipt = await send(anchor.anchor(9, 12, root, s.signers, s.signatures));
      gas["anchor, committee 64 (43 signatures, activates the committee)"] = receipt.gasUsed;
      const root2 = id("root 13..=16");
      const t = sign(c64.slice(0, 43), anchorDigest(chainId, anchorAddress, 13, 16, root2));
      gas["anchor, committee 64 (43 signatures)"] = (await send(anchor.anchor(13, 16, root2, t.signers, t.signatures))).gasUsed;
      const all = sign(c64, anchorDigest(chainId, anchorAddress, 17, 17, root2));
      gas["anchor, committee 64 (all 64 signatures)"] = (await send(anchor.anchor(17, 17, root2, all.signers, all.signatures))).gasUsed;
    });

    const summary1 = summaries0[1];
    const summaryProof1 = tree0.getProof(summaries0.indexOf(summary1));

    await check("rewards: a gateway's reward is paid to its owner once, the second claim refused", async () => {
      const units = 5_000_001n;
      const rewardProof = proofOf(summary1.rewardTree, gatewayIds[0]);
      const before = await token.balanceOf(owners[0].address);
      const receipt = await send(distributor.claim(0, 3, summary1.fields, summaryProof1, gatewayIds[0], units, rewardProof));
      gas["reward claim"] = receipt.gasUsed;
      assert.equal((await token.balanceOf(owners[0].address)) - before, units);
      assert.equal(await distributor.isClaimed(gatewayIds[0], REGION, 1), true);
      await reverts(distributor.claim(0, 3, summary1.fields, summaryProof1, gatewayIds[0], units, rewardProof), "AlreadyClaimed");
    });

    await check("rewards: wrong amount, wrong range, unanchored range and wrong summary refused", async () => {
      const rewardProof = proofOf(summary1.rewardTree, gatewayIds[1]);
      await reverts(distributor.claim(0, 3, summary1.fields, summaryProof1, gatewayIds[1], 1_250_001n, rewardProof), "InvalidLeafProof");
      await reverts(distributor.claim(4, 7, summary1.fields, summaryProof1, gatewayIds[1], 1_250_000n, rewardProof), "EpochOutsideRange");
      await reverts(distributor.claim(0, 2, summary1.fields, summaryProof1, gatewayIds[1], 1_250_000n, rewardProof), "NotAnchored");
      const tampered = { ...summary1.fields, summaryHash: id("tampered") };
      await reverts(distributor.claim(0, 3, tampered, summaryProof1, gatewayIds[1], 1_250_000n, rewardProof), "InvalidSummaryProof");
      await send(distributor.claim(0, 3, summary1.fields, summaryProof1, gatewayIds[1], 1_250_000n, rewardProof));
    });

    const meter0 = id("meter 0");
    const mintArgs = (e, meter = meter0) => {
      const s = summaries0[e];
      return [0, 3, s.fields, tree0.getProof(e), meter, [...s.energyTree.entries()].find(([, v]) => v[0] === meter)[1][1], proofOf(s.energyTree, meter)];
    };

    await check("certificates: minted per MWh from proven energy, remainder carried, each epoch once", async () => {
      // Epoch 0: 2.7 MWh -> 2 certificates, 0.7 MWh carried.
      let receipt = await send(certificate.mint(...mintArgs(0)));
      gas["certificate mint (2 certificates)"] = receipt.gasUsed;
      assert.equal(await certificate.balanceOf(owners[0].address, 1), 2n);
      assert.deepEqual([...(await certificate.meterAccount(meter0))].map(Number), [1, 700_000]);
      await reverts(certificate.mint(...mintArgs(0)), "EpochAlreadyMinted", [meter0, 0, 1]);
      // Epoch 1: 0.5 MWh + 0.7 carried -> 1 certificate, 0.2 carried.
      await send(certificate.mint(...mintArgs(1)));
      assert.equal(await certificate.balanceOf(owners[0].address, 2), 1n);
      assert.deepEqual([...(await certificate.meterAccount(meter0))].map(Number), [2, 200_000]);
      // Epoch 2: 0.1 MWh -> nothing issued, 0.3 carried.
      receipt = await send(certificate.mint(...mintArgs(2)));
      gas["certificate mint (none issued, carry only)"] = receipt.gasUsed;
      assert.equal(await certificate.batchCount(), 2n);
      const batch = await certificate.batch(1);
      assert.deepEqual([batch.meterId, batch.epoch], [meter0, 0n]);
      // A meter rated 1 kW cannot produce 2 MWh in an hour.
      await reverts(certificate.mint(...mintArgs(0, id("meter 1"))), "ExceedsCapacity", [id("meter 1"), 2_000_000, 1_000]);
      const bad = mintArgs(3);
      bad[5] = 1_900_000n;
      await reverts(certificate.mint(...bad), "InvalidLeafProof");
    });

    await check("certificates: transferred, then retired for a beneficiary", async () => {
      await fund(owners[0].address);
      const holder = owners[0];
      const buyer = new ethers.Wallet(id("buyer"), provider);
      const beneficiary = new ethers.Wallet(id("beneficiary"), provider).address;
      await fund(buyer.address);
      await send(certificate.connect(holder).safeTransferFrom(holder.address, buyer.address, 1, 2, "0x"));
      assert.equal(await certificate.balanceOf(buyer.address, 1), 2n);
      const receipt = await send(certificate.connect(buyer).retire(1, 1, beneficiary, "2026 Scope 2, site A"));
      gas["certificate retire"] = receipt.gasUsed;
      assert.equal(await certificate.balanceOf(buyer.address, 1), 1n);
      const record = await certificate.retirement(0);
      assert.deepEqual([record.batchId, record.amount, record.holder, record.beneficiary], [1n, 1n, buyer.address, beneficiary]);
      await reverts(certificate.connect(buyer).retire(1, 5, beneficiary, ""), "ERC1155InsufficientBalance");
      await reverts(certificate.connect(buyer).retire(1, 0, beneficiary, ""), "InvalidRetirement");
    });

    await check("certificates: expire 365 days after issue; mint window closes after the window's epochs are anchored", async () => {
      const buyer = new ethers.Wallet(id("buyer"), provider);
      await provider.send("evm_increaseTime", [365 * 24 * 3600]);
      await provider.send("evm_mine", []);
      await reverts(certificate.connect(buyer).retire(1, 1, buyer.address, ""), "CertificateExpired");
      await reverts(certificate.connect(buyer).safeTransferFrom(buyer.address, owners[0].address, 1, 1, "0x"), "CertificateExpired");
      // Epoch 3 stays mintable while at most MINT_WINDOW epochs past it are anchored.
      let to = 3 + MINT_WINDOW;
      let s = sign(c64.slice(0, 43), anchorDigest(chainId, anchorAddress, 18, to, id("far root")));
      await send(anchor.anchor(18, to, id("far root"), s.signers, s.signatures));
      await send(certificate.mint(...mintArgs(3)));
      // One more anchored epoch closes the window (of meter 1's epoch 3; meter 0 minted it).
      const meter1 = id("meter 1");
      await send(registry.updateMeter(meter1, 3_000_000));
      to += 1;
      const root = id("farther root");
      s = sign(c64.slice(0, 43), anchorDigest(chainId, anchorAddress, to, to, root));
      await send(anchor.anchor(to, to, root, s.signers, s.signatures));
      await reverts(certificate.mint(...mintArgs(3, meter1)), "MintWindowClosed", [3, to + 1]);
      // Gaps between anchored ranges are allowed.
      s = sign(c64.slice(0, 43), anchorDigest(chainId, anchorAddress, to + 10, to + 12, root));
      await send(anchor.anchor(to + 10, to + 12, root, s.signers, s.signatures));
      assert.equal(await anchor.nextEpoch(), BigInt(to + 13));
    });
  } finally {
    child.kill("SIGTERM");
  }

  if (Object.keys(gas).length) {
    console.log("\ngas used (anvil, cancun, solc 0.8.30, optimizer 10000 runs, via IR):");
    for (const [name, value] of Object.entries(gas)) console.log(`  ${String(value).padStart(8)}  ${name}`);
    const g31 = gas["anchor, committee 31 (21 signatures)"];
    const g64 = gas["anchor, committee 64 (43 signatures)"];
    if (g31 && g64) console.log(`  ${String((g64 - g31) / 22n).padStart(8)}  per extra signature (64 vs 31)`);
  }
  console.log(`\n${results.passed} passed, ${results.failed} failed`);
  process.exit(results.failed ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
