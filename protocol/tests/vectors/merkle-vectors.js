// Produces the Merkle test vectors of meshd-protocol's merkle.rs.
const { StandardMerkleTree } = require('@openzeppelin/merkle-tree');
const { keccak256 } = require('ethereum-cryptography/keccak');
const hex = b => '0x' + Buffer.from(b).toString('hex');
const id = s => hex(keccak256(Buffer.from(s, 'utf8')));
const UNITS = ['1', '1000000', '1099511627779', '18446744073709551615', '0', '42', '7', '123456789'];
const WH = ['999999', '1000000', '0', '18446744073709551615', '5', '250000', '3600', '86400000'];
const sets = {
  report: { types: ['bytes32'], value: i => [id(`report-${i}`)] },
  reward: { types: ['bytes32', 'uint256'], value: i => [id(`gateway-${i}`), UNITS[i]] },
  energy: { types: ['bytes32', 'uint256'], value: i => [id(`meter-${i}`), WH[i]] },
};
const out = {};
for (const [name, s] of Object.entries(sets)) {
  for (const n of [1, 2, 3, 5, 8]) {
    const values = [...Array(n).keys()].map(s.value);
    const tree = StandardMerkleTree.of(values, s.types);
    out[`${name}_${n}`] = {
      root: tree.root,
      leaves: values.map(v => tree.leafHash(v)),
      proofs: values.map((_, i) => tree.getProof(i)),
    };
  }
}
console.log(JSON.stringify(out, null, 1));
