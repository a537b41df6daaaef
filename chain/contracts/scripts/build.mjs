// Compiles the meshd contracts with the pinned solc and writes their artifacts
// (ABI + bytecode, JSON) to artifacts/, or with --check compares a fresh build
// with the committed artifacts and exits 1 on any difference.
//
//   node scripts/build.mjs          write artifacts/
//   node scripts/build.mjs --check  verify artifacts/ (CI, cargo test)
//
// Needs `npm ci` (setup.sh) for solc and @openzeppelin/contracts.

import { readFileSync, writeFileSync, readdirSync, mkdirSync, existsSync } from "node:fs";
import { join, dirname, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(join(root, "package.json"));
const solc = require("solc");

/** The exact compiler: a different one changes the bytecode, so it is refused. */
export const SOLC_VERSION = "0.8.30+commit.73712a01.Emscripten.clang";

/**
 * Fixed compiler settings. `runs: 10000` favours cheap calls over cheap
 * deployment (anchor, claim and mint run thousands of times, deploy once);
 * `cancun` is the newest EVM that Avalanche C-Chain and Ethereum both run;
 * viaIR keeps the anchor loop tight.
 */
export const SETTINGS = {
  optimizer: { enabled: true, runs: 10000 },
  viaIR: true,
  evmVersion: "cancun",
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

/** Source folders compiled; contracts of `test/` are test fixtures, never deployed for real. */
const SOURCE_DIRS = ["src", "test"];
const ARTIFACTS = join(root, "artifacts");

function sources() {
  const out = {};
  for (const dir of SOURCE_DIRS) {
    for (const name of readdirSync(join(root, dir)).sort()) {
      if (name.endsWith(".sol")) out[`${dir}/${name}`] = { content: readFileSync(join(root, dir, name), "utf8") };
    }
  }
  return out;
}

function findImport(path) {
  const candidates = [join(root, path), join(root, "node_modules", path)];
  for (const file of candidates) {
    if (existsSync(file)) return { contents: readFileSync(file, "utf8") };
  }
  return { error: `import not found: ${path} (run chain/contracts/setup.sh)` };
}

/** Compiles and returns `{ "<dir>/<Name>.json": text }` for every contract with bytecode. */
export function build() {
  if (solc.version() !== SOLC_VERSION) {
    throw new Error(`solc ${solc.version()} installed, ${SOLC_VERSION} pinned: run chain/contracts/setup.sh`);
  }
  const input = { language: "Solidity", sources: sources(), settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImport }));
  const errors = (output.errors ?? []).filter((e) => e.severity === "error");
  const warnings = (output.errors ?? []).filter((e) => e.severity !== "error");
  for (const w of warnings) process.stderr.write(w.formattedMessage + "\n");
  if (errors.length) throw new Error(errors.map((e) => e.formattedMessage).join("\n"));
  // Warnings fail the build: the sources are kept warning-free.
  if (warnings.length) throw new Error(`${warnings.length} compiler warning(s)`);
  const files = {};
  for (const [sourceName, contracts] of Object.entries(output.contracts)) {
    if (!SOURCE_DIRS.some((d) => sourceName.startsWith(d + "/"))) continue;
    for (const [contractName, c] of Object.entries(contracts)) {
      // Interfaces and libraries of internal functions only are not deployed.
      if (!c.evm.bytecode.object || !c.abi.some((e) => e.type === "function")) continue;
      const artifact = {
        contractName,
        sourceName,
        compiler: { version: SOLC_VERSION, settings: { ...SETTINGS, outputSelection: undefined } },
        abi: c.abi,
        bytecode: "0x" + c.evm.bytecode.object,
        deployedBytecode: "0x" + c.evm.deployedBytecode.object,
      };
      const dir = sourceName.split("/")[0] === "src" ? "" : sourceName.split("/")[0] + "/";
      files[`${dir}${contractName}.json`] = JSON.stringify(artifact, null, 2) + "\n";
    }
  }
  return { files, warnings: warnings.length };
}

function committed() {
  const out = {};
  const walk = (dir) => {
    if (!existsSync(dir)) return;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".json")) out[relative(ARTIFACTS, path)] = readFileSync(path, "utf8");
    }
  };
  walk(ARTIFACTS);
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const check = process.argv.includes("--check");
  const { files } = build();
  if (check) {
    const have = committed();
    const problems = [];
    for (const [name, text] of Object.entries(files)) {
      if (!(name in have)) problems.push(`missing artifacts/${name}`);
      else if (have[name] !== text) problems.push(`artifacts/${name} differs from a fresh build`);
    }
    for (const name of Object.keys(have)) if (!(name in files)) problems.push(`stale artifacts/${name}`);
    if (problems.length) {
      console.error(problems.join("\n"));
      console.error("artifact check: FAILED — run chain/contracts/build.sh and commit artifacts/");
      process.exit(1);
    }
    console.log(`artifact check: ${Object.keys(files).length} artifacts match a fresh build with solc ${SOLC_VERSION}`);
  } else {
    for (const [name, text] of Object.entries(files)) {
      mkdirSync(dirname(join(ARTIFACTS, name)), { recursive: true });
      writeFileSync(join(ARTIFACTS, name), text);
    }
    console.log(`wrote ${Object.keys(files).length} artifacts to ${relative(process.cwd(), ARTIFACTS) || "."}`);
  }
}
