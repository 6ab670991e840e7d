'use strict';
// Node over a PostgreSQL URL: `new Vault('postgresql://…')` does what a user does.
//
// Run by tests/postgres_hosts/run (from `scripts/test postgres`) with KEYLEDGER_LIB pointing
// at a libkeyledger built with the `postgres` feature. KEYLEDGER_PGHOSTS_URL is a fresh
// database on the throwaway cluster; KEYLEDGER_PGHOSTS_CLI the `keyledger` binary built with
// the feature (the second process of the cross-process check). Without them every test
// fails: these tests never skip.
const test = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const path = require('node:path');
const {
  Vault, KeyLedgerError, generateMasterKey, signRequest,
} = require(path.resolve(__dirname, '../../bindings/node'));

delete process.env.KEYLEDGER_MASTER_KEY;

function env(name) {
  const value = process.env[name];
  assert.ok(value, `${name} is not set (tests/postgres_hosts/run sets it)`);
  return value;
}

const FAST = { argon2: { m_kib: 8, t: 1, p: 1 } };
const SEND = ['POST', '/v1/send'];
const master = generateMasterKey();
let vault;

function open() {
  if (!vault) {
    vault = new Vault(env('KEYLEDGER_PGHOSTS_URL'), { ...FAST, masterKey: master, actor: 'node-pg' });
  }
  return vault;
}

test.after(() => vault?.close());

function seed(v, account, credits) {
  v.createAccount(account, { credits });
  try {
    v.addRoute(...SEND, 'sms:send', { cost: 1 });
  } catch (e) {
    if (e.code !== 'already_exists') throw e;
  }
  return v.createKey(account, 'server', ['sms:send'], { prefix: 'dial_live' });
}

function refusal(fn) {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof KeyLedgerError, String(e));
    return [e.status, e.code];
  }
  assert.fail('granted, expected a refusal');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test('the vault opens the URL', () => {
  const v = open();
  assert.ok(v.path.startsWith('postgresql://'), v.path);
});

test('a database that cannot be reached is a storage error', () => {
  const [base, query] = env('KEYLEDGER_PGHOSTS_URL').split('?');
  const missing = `${base.slice(0, base.lastIndexOf('/'))}/kl_no_such_database${query ? `?${query}` : ''}`;
  assert.deepEqual(refusal(() => new Vault(missing, FAST)), [500, 'storage']);
});

test('grant, then 402 when credits run out and 403 for a missing scope', () => {
  const v = open();
  const { token, key } = seed(v, 'node_credits', 2);
  const g = v.authorize(token, { route: SEND });
  assert.deepEqual([g.keyId, Number(g.charged), Number(g.credits)], [key.keyId, 1, 1]);
  assert.equal(Number(v.authorize(token, { route: SEND }).credits), 0);
  assert.deepEqual(refusal(() => v.authorize(token, { route: SEND })), [402, 'insufficient_credits']);
  assert.deepEqual(refusal(() => v.authorize(token, { scope: 'admin:read' })), [403, 'missing_scope']);
  const http = v.authorizeHttp(
    { method: 'GET', target: '/v1/other', authorization: `Bearer ${token}` },
    { scope: 'admin:read' },
  );
  assert.equal(http.status, 403);
  assert.equal(http.grant, null);
  assert.match(http.body, /missing_scope/);
  assert.equal(Number(v.balance('node_credits').credits), 0);
});

test('401 after a revoke in this process', () => {
  const v = open();
  const { token, key } = seed(v, 'node_revoke', 5);
  assert.equal(Number(v.authorize(token, { route: SEND }).charged), 1);
  v.revokeKey(key.keyId);
  assert.deepEqual(refusal(() => v.authorize(token, { route: SEND })), [401, 'invalid_api_key']);
  assert.equal(Number(v.balance('node_revoke').credits), 4);
});

test('debits are exact and idempotent, and the audit reads back', async () => {
  const v = open();
  v.createAccount('node_debit', { credits: 100 });
  await Promise.all(
    Array.from({ length: 10 }, (_, i) => v.debitAsync('node_debit', 3, { idempotencyKey: `job-${i}` })),
  );
  v.debit('node_debit', 3, { idempotencyKey: 'job-0' }); // a replay charges nothing
  assert.equal(Number(v.balance('node_debit').credits), 70);
  assert.deepEqual(refusal(() => v.debit('node_debit', 71)), [402, 'insufficient_credits']);
  assert.equal(Number(v.balance('node_debit').credits), 70);
  const debits = v.audit({ accountId: 'node_debit', action: 'credits_debited', limit: 1000 });
  assert.equal(debits.length, 10);
  assert.ok(debits.every((e) => e.actor === 'node-pg'));
});

test('a signing secret round-trips and signs a granted request', () => {
  const v = open();
  v.createAccount('node_sign', { credits: 10 });
  try {
    v.addRoute(...SEND, 'sms:send', { cost: 1 });
  } catch (e) {
    if (e.code !== 'already_exists') throw e;
  }
  const { token, key, signingSecret } = v.createKey('node_sign', 'signed', ['sms:send'], { signing: true });
  assert.match(signingSecret, /^[0-9a-f]{64}$/);
  assert.equal(v.revealSigningSecret(key.keyId), signingSecret);
  const body = Buffer.from('{"to":"+15550100"}');
  const now = Math.floor(Date.now() / 1000) * 1000;
  const signature = signRequest(signingSecret, 'POST', '/v1/send', body, now);
  assert.equal(Number(v.authorize(token, { route: SEND, signature, body, now }).charged), 1);
  assert.deepEqual(refusal(() => v.authorize(token, { route: SEND })), [401, 'invalid_signature']);
  const other = new Vault(env('KEYLEDGER_PGHOSTS_URL'), { ...FAST, masterKey: master });
  try {
    assert.equal(other.revealSigningSecret(key.keyId), signingSecret);
  } finally {
    other.close();
  }
});

test('a revoke by another process is refused here once the notification arrives', async () => {
  const v = open();
  const { token, key } = seed(v, 'node_cross', 1000);
  // The cache serves nothing until the change listener has confirmed its position.
  const listeningBy = Date.now() + 10_000;
  while (v.stats().cacheMode !== 'shared') {
    assert.ok(Date.now() < listeningBy, 'the change listener did not connect within 10 s');
    await sleep(1);
  }
  assert.equal(Number(v.authorize(token, { route: SEND }).charged), 1); // now cached here
  execFileSync(
    env('KEYLEDGER_PGHOSTS_CLI'),
    ['--vault', env('KEYLEDGER_PGHOSTS_URL'), '--json', 'key', 'revoke', key.keyId],
    { stdio: ['ignore', 'pipe', 'inherit'], timeout: 60_000 },
  );
  const deadline = Date.now() + 10_000;
  let refused = null;
  while (Date.now() < deadline) {
    try {
      v.authorize(token, { route: SEND });
    } catch (e) {
      refused = [e.status, e.code];
      break;
    }
    await sleep(1);
  }
  assert.deepEqual(refused, [401, 'invalid_api_key'], 'still granted 10 s after the other process revoked');
});
