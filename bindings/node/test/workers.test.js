'use strict';
// Two worker_threads, each with its own Vault handle on the same file, spend one
// account's credits concurrently: exactly N grants, never an overspend or a lost debit.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { Worker } = require('node:worker_threads');
const { seeded, FAST } = require('../testlib/helpers');

const WORKER = `
  const { parentPort, workerData } = require('node:worker_threads');
  const { Vault } = require(workerData.pkg);
  const vault = new Vault(workerData.file, workerData.options);
  const route = ['POST', '/api/v1/messaging/send'];
  let grants = 0, refusals = 0, debits = 0, last = Infinity, i = 0;
  const go = new Int32Array(workerData.start);
  Atomics.wait(go, 0, 0); // start together
  for (;;) {
    if (++i % 3 === 0) {
      // mix in management debits: the same credits, the same exactness
      try { vault.debit('acct_42', 1); debits++; continue; } catch (e) {
        if (e.code !== 'insufficient_credits') throw e;
      }
    }
    try {
      const g = vault.authorize(workerData.token, { route });
      if (g.charged !== 1) throw new Error('charged ' + g.charged);
      if (g.credits >= last) throw new Error('credits went up within one worker');
      last = g.credits;
      grants++;
    } catch (e) {
      if (e.code !== 'insufficient_credits') throw e;
      if (e.status !== 402 || e.body.credits !== 0 || e.body.required !== 1) throw new Error('bad 402 body');
      refusals++;
      if (refusals >= 3) break;
    }
  }
  vault.close();
  parentPort.postMessage({ grants, debits, refusals });
`;

test('two worker threads debiting one vault file concurrently: exact totals', async (t) => {
  const N = 120;
  const { file, vault, token } = seeded({ credits: N });
  const start = new SharedArrayBuffer(4);
  const run = () =>
    new Promise((resolve, reject) => {
      const w = new Worker(WORKER, {
        eval: true,
        workerData: { pkg: path.resolve(__dirname, '..'), file, token, options: FAST, start },
      });
      w.once('message', resolve);
      w.once('error', reject);
      w.once('exit', (code) => code !== 0 && reject(new Error(`worker exited with ${code}`)));
    });
  const results = Promise.all([run(), run()]);
  await new Promise((r) => setTimeout(r, 200)); // both workers opened and waiting
  const go = new Int32Array(start);
  Atomics.store(go, 0, 1);
  Atomics.notify(go, 0);
  const [a, b] = await results;
  t.diagnostic(`worker results: ${JSON.stringify({ a, b })}`);
  const spent = a.grants + a.debits + b.grants + b.debits;
  assert.equal(spent, N, `grants+debits ${JSON.stringify([a, b])}`);
  assert.ok(a.grants > 0 && b.grants > 0, `both workers got grants: ${JSON.stringify([a, b])}`);
  const bal = vault.balance('acct_42');
  assert.equal(bal.credits, 0);
  assert.equal(bal.totalCredits, N);
  vault.flush();
  const debited = vault.audit({ action: 'credits_debited', limit: 1000 }).length;
  assert.equal(debited, a.debits + b.debits);
  vault.close();
});
