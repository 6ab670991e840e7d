'use strict';
// A worker pool that recycles its workers with worker.terminate(), which runs no JS in the
// worker (no 'exit' event, no FinalizationRegistry callback): the vault each worker opened
// must still be released (its threads, its file descriptors, its lock on the file).
// 200 workers, 4 at a time, each opens the vault, authorizes a request and is terminated
// with the vault still open; afterwards the process has the threads and descriptors it
// started with, and an exclusive open of the file succeeds.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { Worker } = require('node:worker_threads');
const { Vault } = require('..');
const { seeded, FAST } = require('../testlib/helpers');

const CYCLES = 200;
const POOL = 4;

const WORKER = `
  const { parentPort, workerData } = require('node:worker_threads');
  const { Vault } = require(workerData.pkg);
  const vault = new Vault(workerData.file, workerData.options);
  const g = vault.authorize(workerData.token, { route: ['GET', '/api/v1/numbers/mine'] });
  parentPort.postMessage(g.accountId);
  setInterval(() => {}, 1000); // busy until terminated, the vault never closed
`;

const count = (dir) => fs.readdirSync(dir).length;
const snapshot = () => ({
  threads: count('/proc/self/task'),
  fds: count('/proc/self/fd'),
  rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20),
});

test(`${CYCLES} workers terminated with their vault open leak no threads, descriptors or lock`, {
  skip: process.platform !== 'linux' && 'counts threads and descriptors in /proc (Linux)',
  timeout: 300_000,
}, async () => {
  const { file, vault, token } = seeded();
  vault.close();
  const pkg = path.resolve(__dirname, '..');
  // One cycle first, so that lazily started process-wide threads are counted in `before`.
  const cycle = async () => {
    const w = new Worker(WORKER, { eval: true, workerData: { pkg, file, token, options: FAST } });
    const account = await new Promise((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    assert.equal(account, 'acct_42');
    await w.terminate();
  };
  await cycle();
  await new Promise((r) => setTimeout(r, 100));
  const before = snapshot();
  let done = 1;
  await Promise.all(Array.from({ length: POOL }, async () => {
    while (done < CYCLES) {
      done++;
      await cycle();
    }
  }));
  await new Promise((r) => setTimeout(r, 200));
  const after = snapshot();
  console.log(`# after ${done} worker cycles: threads ${before.threads} -> ${after.threads}, ` +
    `fds ${before.fds} -> ${after.fds}, rss ${before.rssMiB} -> ${after.rssMiB} MiB`);
  assert.ok(after.threads <= before.threads + 2, `threads grew from ${before.threads} to ${after.threads}`);
  assert.ok(after.fds <= before.fds + 4, `file descriptors grew from ${before.fds} to ${after.fds}`);
  const exclusive = new Vault(file, { ...FAST, exclusive: true });
  assert.equal(exclusive.balance('acct_42').credits, 10);
  exclusive.close();
});
