'use strict';
// Durable debits from Node: each authorize charges 1 credit, so each waits for a commit.
// Three ways over one vault and one verified key, on the same machine, back to back:
//   sync        vault.authorize(), one at a time (the event loop blocked by each commit);
//   sequential  await vault.authorizeAsync(), one at a time (one in flight);
//   concurrent  IN_FLIGHT authorizeAsync() calls in flight at once (libuv workers: the
//               commit lane, UV_THREADPOOL_SIZE of them, default 4).
// For each: debits per second and debits per commit (the handle's commit counter,
// vault.stats().commits, is the number of redb commits this handle made: group commit
// writes the debits waiting together in one).
//
//   node bench/concurrent-debits.js [debits] [in-flight]
//   UV_THREADPOOL_SIZE=16 node bench/concurrent-debits.js 4000 64
// Prints one line per mode and, last, a JSON line with every figure.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Vault, version, libraryPath } = require('..');

const DEBITS = Number(process.argv[2] || 2000);
const IN_FLIGHT = Number(process.argv[3] || 64);
const SCOPE = { scope: 'sms:send', cost: 1 };

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keyledger-debits-'));
// The default argon2 parameters: a release build refuses weaker ones, and only one key
// is ever hashed and verified here.
const vault = new Vault(path.join(dir, 'debits.redb'));
vault.createAccount('acct_bench', { credits: 10 * DEBITS + 100 });
const { token } = vault.createKey('acct_bench', 'bench', ['sms:send']);
vault.authorize(token, { scope: 'sms:send' }); // verified once: no argon2 below

async function measure(label, body) {
  const c0 = vault.stats().commits;
  const t0 = process.hrtime.bigint();
  await body();
  const ns = Number(process.hrtime.bigint() - t0);
  const commits = vault.stats().commits - c0;
  const r = {
    mode: label,
    debits: DEBITS,
    perSecond: Math.round(DEBITS / (ns / 1e9)),
    usPerDebit: Number((ns / 1000 / DEBITS).toFixed(1)),
    commits,
    debitsPerCommit: Number((DEBITS / Math.max(1, commits)).toFixed(2)),
  };
  console.log(`${label.padEnd(34)} ${String(r.perSecond).padStart(7)} debits/s  ${r.usPerDebit.toFixed(1).padStart(8)} µs/debit  ${r.debitsPerCommit.toFixed(2).padStart(6)} debits/commit (${commits} commits)`);
  return r;
}

async function main() {
  console.log(`keyledger ${version()} (${libraryPath}), node ${process.version}, ${DEBITS} debits, ` +
    `UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE || '4 (default)'}`);
  const results = [];
  results.push(await measure('sync authorize, one at a time', async () => {
    for (let i = 0; i < DEBITS; i++) vault.authorize(token, SCOPE);
  }));
  results.push(await measure('authorizeAsync, one in flight', async () => {
    for (let i = 0; i < DEBITS; i++) await vault.authorizeAsync(token, SCOPE);
  }));
  results.push(await measure(`authorizeAsync, ${IN_FLIGHT} in flight`, async () => {
    let next = 0;
    const lane = async () => {
      while (next < DEBITS) {
        next++;
        await vault.authorizeAsync(token, SCOPE);
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  }));
  const left = vault.authorize(token, { scope: 'sms:send' }).credits;
  if (left !== 10 * DEBITS + 100 - 3 * DEBITS) throw new Error(`credits ${left}: a debit was lost or doubled`);
  vault.close();
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(JSON.stringify({ bench: 'node_concurrent_debits', inFlight: IN_FLIGHT, results }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
