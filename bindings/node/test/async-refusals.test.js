'use strict';
// A refusal decided on a libuv worker thread (authorizeAsync's blocking path) is the same
// KeyLedgerError as the synchronous call's: status, code, message and the whole JSON body
// (the worker's body comes back through kl_authorize_opts.error_body).
const test = require('node:test');
const assert = require('node:assert/strict');
const { Vault, KeyLedgerError, generateMasterKey } = require('..');
const { FAST, vaultPath } = require('../testlib/helpers');

const NOW = Date.UTC(2030, 0, 1, 12, 0, 0);
const SEND = ['POST', '/api/v1/messaging/send'];

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/**
 * `token` with one secret character changed and its checksum (the last 6 base62
 * characters: CRC32 of the rest, big-endian) recomputed: only argon2 can refuse it.
 */
function forge(token) {
  const body = token.slice(0, -6).split('');
  const at = body.length - 3;
  body[at] = ALPHABET[(ALPHABET.indexOf(body[at]) + 1) % 62];
  const text = body.join('');
  let c = 0xffffffff;
  for (const b of Buffer.from(text, 'utf8')) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  let v = (c ^ 0xffffffff) >>> 0;
  const sum = [];
  for (let i = 0; i < 6; i++) {
    sum.unshift(ALPHABET[v % 62]);
    v = Math.floor(v / 62);
  }
  return text + sum.join('');
}

/**
 * A vault with the keys `make(vault)` creates, reopened on a fresh handle: no key has been
 * verified by this handle yet, so each one's first call runs argon2, and authorizeAsync
 * sends it to a worker thread.
 */
function coldVault(make) {
  const file = vaultPath();
  const masterKey = generateMasterKey();
  const v = new Vault(file, { ...FAST, masterKey });
  v.addRoute('POST', '/api/v1/messaging/send', 'sms:send', { cost: 1 });
  v.createAccount('rich', { credits: 100 });
  v.createAccount('poor', { credits: 0 });
  v.createAccount('limited', { credits: 100 });
  v.setRatelimit('per_minute', 1, 60_000, { accountId: 'limited' });
  const keys = make((account, options = {}) => v.createKey(account, 'k', ['sms:send'], options));
  v.close();
  return { vault: new Vault(file, { masterKey }), keys };
}

function plain(e) {
  assert.ok(e instanceof KeyLedgerError, `expected a KeyLedgerError, got ${e}`);
  return { name: e.name, message: e.message, status: e.status, code: e.code, body: e.body, klStatus: e.klStatus };
}

async function asyncError(promise) {
  try {
    await promise;
  } catch (e) {
    return plain(e);
  }
  assert.fail('authorizeAsync should have been refused');
}

function syncError(fn) {
  try {
    fn();
  } catch (e) {
    return plain(e);
  }
  assert.fail('authorize should have been refused');
}

/**
 * The first (cold) call through authorizeAsync, which runs argon2 on a worker thread (the
 * handle's argon2 count proves it), then the same call synchronously: identical errors.
 */
async function sameRefusal(vault, token, options, code, status) {
  const before = vault.stats().argon2Runs;
  const cold = await asyncError(vault.authorizeAsync(token, options));
  assert.equal(vault.stats().argon2Runs, before + 1, 'the cold call ran argon2 (on a worker)');
  const sync = syncError(() => vault.authorize(token, options));
  assert.deepEqual(cold, sync);
  assert.equal(cold.code, code);
  assert.equal(cold.status, status);
  assert.equal(cold.body.error, code);
  return cold;
}

test('cold refusals decided on a worker equal the synchronous ones (401, 402, 403, 429, signature)', async () => {
  const { vault, keys } = coldVault((key) => ({
    rich: key('rich').token,
    poor: key('poor').token,
    scoped: key('rich').token,
    spender: key('limited').token,
    limited: key('limited').token,
    signing: key('rich', { signing: true }).token,
    poorFull: key('poor').token,
  }));
  const opts = { route: SEND, now: NOW };

  // 401: a wrong secret for a real key id: only argon2 can tell.
  const wrong = forge(keys.rich);
  await sameRefusal(vault, wrong, opts, 'invalid_api_key', 401);

  // 402: no credits, refused on the worker after verifying the key.
  const e402 = await sameRefusal(vault, keys.poor, opts, 'insufficient_credits', 402);
  assert.equal(e402.body.credits, 0);
  assert.equal(e402.body.required, 1);

  // 403: a scope the key lacks.
  const e403 = await sameRefusal(vault, keys.scoped, { scope: 'admin:write', now: NOW }, 'missing_scope', 403);
  assert.equal(e403.body.required, 'admin:write');

  // 429: the account's limit, spent by another key.
  vault.authorize(keys.spender, opts);
  const e429 = await sameRefusal(vault, keys.limited, opts, 'rate_limited', 429);
  assert.equal(e429.body.limit, 'per_minute');
  assert.equal(e429.body.max, 1);
  assert.equal(typeof e429.body.retry_after, 'number');

  // A signing key with a bad signature.
  const bad = { route: SEND, now: NOW, body: '{"to":"A"}', signature: `t=${Math.floor(NOW / 1000)},v2=${'0'.repeat(64)}` };
  await sameRefusal(vault, keys.signing, bad, 'invalid_signature', 401);

  // The JSON variant (full: true) too.
  await sameRefusal(vault, keys.poorFull, { ...opts, full: true }, 'insufficient_credits', 402);
  vault.close();
});

test('a refusal decided on a worker for a warm key (a commit wait) equals the synchronous one', async () => {
  const { vault, keys } = coldVault((key) => ({ rich: key('rich').token }));
  const token = keys.rich;
  vault.authorize(token, { scope: 'sms:send' }); // warm: no argon2 from here on
  const idem = { route: SEND, now: NOW, idempotencyKey: 'order-1', onReplay: 'refuse' };
  await vault.authorizeAsync(token, idem); // a commit: on a worker
  const before = vault.stats().argon2Runs;
  const asyncDup = await asyncError(vault.authorizeAsync(token, idem));
  const syncDup = syncError(() => vault.authorize(token, idem));
  assert.equal(vault.stats().argon2Runs, before);
  assert.deepEqual(asyncDup, syncDup);
  assert.equal(asyncDup.code, 'duplicate_request');
  assert.equal(asyncDup.body.charged, 1);
  vault.close();
});

test('authorizeHttpAsync answers a cold refusal exactly as authorizeHttp does', async () => {
  const { vault, keys } = coldVault((key) => ({ poor: key('poor').token, rich: key('rich').token }));
  const cases = [
    [keys.poor, 402],
    [forge(keys.rich), 401],
  ];
  for (const [token, status] of cases) {
    const req = { method: 'POST', target: '/api/v1/messaging/send', authorization: `Bearer ${token}` };
    const before = vault.stats().argon2Runs;
    const cold = await vault.authorizeHttpAsync(req, { now: NOW });
    assert.equal(vault.stats().argon2Runs, before + 1);
    const sync = vault.authorizeHttp(req, { now: NOW });
    assert.deepEqual(cold, sync);
    assert.equal(cold.status, status);
    assert.equal(JSON.parse(cold.body).success, false);
  }
  vault.close();
});
