'use strict';
// Forged tokens must not stall the event loop. Key ids are not secret (they appear in
// redacted logs and grants), so a stranger can mint tokens with a known key id, a wrong
// secret and a valid checksum: each costs keyledger an argon2 run to refuse. 200 of them
// over 20 key ids go to a real Express server (the gate in a router mounted at /v1) at
// once, over 20 connections; meanwhile a request with a key the server has already verified and an unrelated
// timer must each complete within 50 ms, and every forged request gets 401 or 429.
const test = require('node:test');
const assert = require('node:assert/strict');
const { Worker } = require('node:worker_threads');
const express = require('express');
const { Vault, looksLikeKey } = require('..');
const { keyledgerMiddleware } = require('../express');
const { vaultPath } = require('../testlib/helpers');

// argon2 parameters that make each forged token cost real time on a debug build.
const ARGON2 = { argon2: { m_kib: 4096, t: 1, p: 1 } };
const BOUND_MS = 50;

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(text) {
  let c = 0xffffffff;
  for (const b of Buffer.from(text, 'utf8')) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * A forgery of `token`: the same prefix and key id, `n` secret characters changed, and
 * the checksum (the secret's last 6 base62 characters: the CRC32 of everything before
 * them, big-endian) recomputed, so it passes every check short of argon2.
 */
function forge(token, n) {
  const body = token.slice(0, -6).split('');
  for (let i = 0; i < 3; i++) {
    const at = body.length - 1 - ((n * 7 + i * 11) % 40);
    body[at] = ALPHABET[(ALPHABET.indexOf(body[at]) + 1 + n + i) % 62];
  }
  const text = body.join('');
  let v = crc32(text);
  const sum = [];
  for (let i = 0; i < 6; i++) {
    sum.unshift(ALPHABET[v % 62]);
    v = Math.floor(v / 62);
  }
  return text + sum.join('');
}

test('200 forged tokens over 20 key ids: a verified request and a timer still complete within 50 ms', { timeout: 300_000 }, async (t) => {
  const vault = new Vault(vaultPath(), ARGON2);
  vault.addRoute('GET', '/v1/numbers/mine', 'numbers:read');
  vault.createAccount('acct_42', { credits: 10 });
  const victims = [];
  for (let i = 0; i < 20; i++) victims.push(vault.createKey('acct_42', `k${i}`, ['numbers:read']).token);
  const good = vault.createKey('acct_42', 'good', ['numbers:read']).token;

  const router = express.Router();
  router.use(keyledgerMiddleware(vault));
  router.get('/numbers/mine', (req, res) => res.json({ account: req.keyledger.accountId }));
  const app = express();
  // Counts the forged requests that reached the server, to time the others mid-burst.
  let seen = 0;
  let burstArrived;
  const arrived = new Promise((resolve) => { burstArrived = resolve; });
  app.use((req, _res, next) => {
    if (req.headers.authorization !== `Bearer ${good}` && ++seen === 20) burstArrived();
    next();
  });
  app.use('/v1', router);
  const server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  t.after(() => new Promise((r) => server.close(() => { vault.close(); r(); })));
  const url = `http://127.0.0.1:${server.address().port}/v1/numbers/mine`;
  const get = (token) => fetch(url, { headers: { Authorization: `Bearer ${token}` } });

  // The legitimate key is verified once, before the burst (under the mount prefix).
  let r = await get(good);
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { account: 'acct_42' });

  const forged = [];
  for (let i = 0; i < 200; i++) {
    const f = forge(victims[i % 20], Math.floor(i / 20));
    assert.ok(looksLikeKey(f) && f !== victims[i % 20], 'a forged token passes the checksum');
    forged.push(f);
  }
  // The hostile client runs on its own thread (its own event loop), as it would on
  // another machine: what is timed is the server's event loop alone.
  const started = performance.now();
  const client = new Worker(`
    const http = require('node:http');
    const { parentPort, workerData } = require('node:worker_threads');
    // 20 hostile connections (one per key id), keep-alive, all 200 requests queued at once.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 20 });
    const send = (f) => new Promise((resolve, reject) => {
      http.get(workerData.url, { agent, headers: { Authorization: 'Bearer ' + f } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      }).on('error', reject);
    });
    Promise.all(workerData.forged.map(send)).then((statuses) => {
      agent.destroy();
      parentPort.postMessage(statuses);
    });
  `, { eval: true, workerData: { forged, url } });
  const burst = new Promise((resolve, reject) => {
    client.once('message', resolve);
    client.once('error', reject);
  });
  t.after(() => client.terminate());
  await arrived; // 20 forged requests are in: the burst is on

  // Into the burst: the verified request and an unrelated timer, each timed.
  const timer = new Promise((resolve) => {
    const at = performance.now();
    setTimeout(() => resolve(performance.now() - at), 1);
  });
  const legit = (async () => {
    const at = performance.now();
    const res = await get(good);
    const body = await res.json();
    return { ms: performance.now() - at, status: res.status, body };
  })();
  const [timerMs, verified] = await Promise.all([timer, legit]);
  const statuses = await burst;
  const total = performance.now() - started;
  const counts = {};
  for (const s of statuses) counts[s] = (counts[s] || 0) + 1;
  console.log(`# timer fired after ${timerMs.toFixed(1)} ms; verified request answered in ` +
    `${verified.ms.toFixed(1)} ms; the 200 forged requests took ${total.toFixed(0)} ms: ${JSON.stringify(counts)}`);
  assert.equal(verified.status, 200);
  assert.deepEqual(verified.body, { account: 'acct_42' });
  assert.ok(verified.ms < BOUND_MS, `the verified request took ${verified.ms.toFixed(1)} ms during the forged burst (bound ${BOUND_MS} ms)`);
  assert.ok(timerMs < BOUND_MS, `a 1 ms timer fired after ${timerMs.toFixed(1)} ms during the forged burst (bound ${BOUND_MS} ms)`);
  for (const s of statuses) assert.ok(s === 401 || s === 429, `a forged request got ${s}`);
});
