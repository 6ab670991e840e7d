'use strict';
// Hot authorize from Node: a cached key on a free route (cost 0), nothing changed.
// 200 000 timed calls after a warm-up, timed per batch of 1000 with
// process.hrtime.bigint(); prints the median (p50) per call for the fast fixed-struct
// path and for `full: true` (the JSON variant with scopes and rate limits).
//
//   node bench/hot-authorize.js [calls]
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Vault, version, libraryPath } = require('..');

const CALLS = Number(process.argv[2] || 200_000);
const BATCH = 1000;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keyledger-bench-'));
// The default argon2 parameters: a release build (what the targets are about) refuses
// weaker ones, and the one key is hashed and verified once.
const vault = new Vault(path.join(dir, 'bench.redb'));
vault.addRoute('GET', '/api/v1/numbers/mine', 'numbers:read');
vault.createAccount('acct_bench', { credits: 1000 });
const { token } = vault.createKey('acct_bench', 'bench', ['numbers:read'], { prefix: 'dial_live' });

function run(label, options) {
  for (let i = 0; i < 20_000; i++) vault.authorize(token, options); // warm-up (and argon2 once)
  const perCall = [];
  for (let b = 0; b < CALLS / BATCH; b++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < BATCH; i++) vault.authorize(token, options);
    perCall.push(Number(process.hrtime.bigint() - t0) / BATCH);
  }
  perCall.sort((x, y) => x - y);
  const p50 = perCall[Math.floor(perCall.length / 2)];
  const p99 = perCall[Math.floor(perCall.length * 0.99)];
  console.log(`${label.padEnd(28)} p50 ${(p50 / 1000).toFixed(2)} µs/call   (p99 of batches ${(p99 / 1000).toFixed(2)} µs)`);
}

console.log(`keyledger ${version()} (${libraryPath}), node ${process.version}, ${CALLS} calls`);
run('authorize (fixed struct)', { route: ['GET', '/api/v1/numbers/mine'] });
run('authorize full: true (JSON)', { route: ['GET', '/api/v1/numbers/mine'], full: true });
vault.close();
fs.rmSync(dir, { recursive: true, force: true });
