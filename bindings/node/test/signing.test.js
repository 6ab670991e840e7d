'use strict';
// Request signing from Node: master key, signing keys, signed requests (directly and through the
// Express middleware), rekey, webhooks. Mirrors tests/python/test_signing.py.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const express = require('express');
const {
  Vault, KeyLedgerError, generateMasterKey, signRequest, signWebhook, verifyWebhook,
} = require('..');
const { keyledgerMiddleware, captureRawBody } = require('../express');
const { FAST, vaultPath, refused } = require('../testlib/helpers');

// The library reads KEYLEDGER_MASTER_KEY when no key is given: keep it out of the way.
delete process.env.KEYLEDGER_MASTER_KEY;

const SEND = ['POST', '/v1/send'];
const BODY = Buffer.from('{"to":"+15550100"}');

function signedVault(master = generateMasterKey()) {
  const file = vaultPath();
  const vault = new Vault(file, { ...FAST, masterKey: master });
  vault.createAccount('a', { credits: 10 });
  vault.addRoute(...SEND, 'sms:send', { cost: 1 });
  const created = vault.createKey('a', 'signed', ['sms:send'], { signing: true });
  return { file, vault, master, ...created };
}

test('generateMasterKey gives base64 of 32 random bytes', () => {
  const a = generateMasterKey();
  const b = generateMasterKey();
  assert.equal(Buffer.from(a, 'base64').length, 32);
  assert.notEqual(a, b);
});

test('a signing key needs a master key; other keys do not', (t) => {
  const vault = new Vault(vaultPath(), FAST);
  t.after(() => vault.close());
  assert.equal(vault.hasMasterKey, false);
  vault.createAccount('a');
  refused(assert, () => vault.createKey('a', 'k', ['x'], { signing: true }), 'invalid_argument', 400);
  const plain = vault.createKey('a', 'k', ['x']);
  assert.equal(plain.signingSecret, null);
  assert.equal(plain.key.signing, false);
});

test('a signed request is granted; unsigned, forged, other-body and stale ones are refused', (t) => {
  const { vault, token, key, signingSecret } = signedVault();
  t.after(() => vault.close());
  assert.equal(vault.hasMasterKey, true);
  assert.equal(key.signing, true);
  assert.match(signingSecret, /^[0-9a-f]{64}$/);

  const now = new Date(Math.floor(Date.now() / 1000) * 1000); // t= has whole seconds
  const sig = signRequest(signingSecret, 'POST', '/v1/send', BODY, now);
  assert.match(sig, new RegExp(`^t=${now.getTime() / 1000},v2=[0-9a-f]{64}$`));
  // the header is the documented HMAC: anyone can compute it with node:crypto
  const bodyHash = crypto.createHash('sha256').update(BODY).digest('hex');
  const mac = crypto.createHmac('sha256', signingSecret)
    .update(`keyledger-signature-v2\n${now.getTime() / 1000}\nPOST\n/v1/send\n${bodyHash}`).digest('hex');
  assert.equal(sig, `t=${now.getTime() / 1000},v2=${mac}`);
  // the method is upper-cased; a string body is its UTF-8 bytes
  assert.equal(signRequest(signingSecret, 'post', '/v1/send', BODY.toString(), now), sig);

  const g = vault.authorize(token, { route: SEND, signature: sig, body: BODY, now });
  assert.equal(g.charged, 1);
  assert.equal(vault.authorize(token, { route: SEND, signature: sig, body: BODY.toString(), now, full: true }).charged, 1);

  const e = refused(assert, () => vault.authorize(token, { route: SEND }), 'invalid_signature', 401);
  assert.ok(e instanceof KeyLedgerError);
  refused(assert, () => vault.authorize(token, { route: SEND, signature: sig, body: 'other', now }), 'invalid_signature', 401);
  refused(assert, () => vault.authorize(token, { route: SEND, signature: sig.replace('v2=', 'v2=0'), body: BODY, now }), 'invalid_signature', 401);
  const later = (s) => new Date(now.getTime() + s * 1000);
  refused(assert, () => vault.authorize(token, { route: SEND, signature: sig, body: BODY, now: later(301) }), 'invalid_signature', 401);
  refused(assert, () => vault.authorize(token, { route: SEND, signature: sig, body: BODY, now: later(-301) }), 'invalid_signature', 401);
  assert.equal(vault.authorize(token, { route: SEND, signature: sig, body: BODY, now: later(300) }).charged, 1);
  // t defaults to now
  assert.equal(vault.authorize(token, { route: SEND, signature: signRequest(signingSecret, 'POST', '/v1/send', BODY), body: BODY }).charged, 1);

  assert.equal(vault.revealSigningSecret(key.keyId), signingSecret);
  assert.equal(vault.audit({ action: 'signing_secret_revealed' })[0].keyId, key.keyId);
  refused(assert, () => vault.revealSigningSecret('zzzzzzzz'), 'not_found', 404);
  assert.throws(() => signRequest(signingSecret, 'POST', 42, BODY), TypeError);
});

test('rotating a signing key mints a new signing secret', (t) => {
  const { vault, key, signingSecret } = signedVault();
  t.after(() => vault.close());
  const r = vault.rotateKey(key.keyId);
  assert.match(r.signingSecret, /^[0-9a-f]{64}$/);
  assert.notEqual(r.signingSecret, signingSecret);
  assert.equal(r.key.rotatedFrom, key.keyId);
  const sig = signRequest(r.signingSecret, 'POST', '/v1/send', BODY);
  assert.equal(vault.authorize(r.token, { route: SEND, signature: sig, body: BODY }).charged, 1);
  const old = signRequest(signingSecret, 'POST', '/v1/send', BODY);
  refused(assert, () => vault.authorize(r.token, { route: SEND, signature: old, body: BODY }), 'invalid_signature', 401);
  assert.equal(vault.revealSigningSecret(r.key.keyId), r.signingSecret);
});

test('wrong master key, rekey, Buffer keys and the environment variable', () => {
  const { file, vault, master, key, signingSecret } = signedVault();
  vault.close();
  refused(assert, () => new Vault(file, { ...FAST, masterKey: generateMasterKey() }), 'wrong_master_key', 500);
  refused(assert, () => new Vault(file, { ...FAST, masterKey: 'not base64 of 32 bytes' }), 'invalid_argument', 400);
  refused(assert, () => new Vault(file, { ...FAST, masterKey: Buffer.alloc(31) }), 'invalid_argument', 400);
  refused(assert, () => new Vault(file, { ...FAST, masterKey: master, masterPassphrase: 'pw' }), 'invalid_argument', 400);
  refused(assert, () => new Vault(file, { ...FAST, signatureWindowMs: 0 }), 'invalid_argument', 400);
  refused(assert, () => new Vault(file, { ...FAST, throttle: { perSecond: -1 } }), 'invalid_argument', 400);
  assert.throws(() => new Vault(file, { ...FAST, masterKey: 42 }), TypeError);

  // the same key as a 32-byte Buffer opens it; rekey moves every secret
  const v = new Vault(file, { ...FAST, masterKey: Buffer.from(master, 'base64'), signatureWindowMs: 60_000, throttle: { burst: 3, perSecond: 0.5 } });
  const next = crypto.randomBytes(32);
  assert.equal(v.rekey(next), 1);
  assert.equal(v.revealSigningSecret(key.keyId), signingSecret);
  refused(assert, () => v.rekey('c2hvcnQ='), 'invalid_argument', 400);
  assert.throws(() => v.rekey(null), TypeError);
  v.close();
  refused(assert, () => new Vault(file, { ...FAST, masterKey: master }), 'wrong_master_key', 500);

  // without a key option, the library reads KEYLEDGER_MASTER_KEY
  process.env.KEYLEDGER_MASTER_KEY = next.toString('base64');
  try {
    const e = new Vault(file, FAST);
    assert.equal(e.hasMasterKey, true);
    assert.equal(e.revealSigningSecret(key.keyId), signingSecret);
    e.close();
  } finally {
    delete process.env.KEYLEDGER_MASTER_KEY;
  }
  // without any, it still opens (signing secrets stay sealed)
  const none = new Vault(file, FAST);
  assert.equal(none.hasMasterKey, false);
  refused(assert, () => none.revealSigningSecret(key.keyId), 'wrong_master_key', 500);
  none.close();
});

test('stats() reports the handle counters and cache mode', (t) => {
  const { vault, token, signingSecret } = signedVault();
  t.after(() => vault.close());
  const sig = signRequest(signingSecret, 'POST', '/v1/send', BODY);
  vault.authorize(token, { route: SEND, signature: sig, body: BODY });
  const s = vault.stats();
  assert.deepEqual(Object.keys(s).sort(), ['argon2Runs', 'cacheMode', 'commits', 'readTxns', 'throttled']);
  assert.equal(s.argon2Runs, 1);
  assert.ok(s.commits >= 1);
  assert.equal(s.cacheMode, 'shared');
  const closed = new Vault(vaultPath(), FAST);
  closed.close();
  assert.throws(() => closed.stats(), (e) => e.code === 'vault_closed');
});

test('webhooks: RFC 4231 vectors and byte-compatibility with node:crypto', () => {
  const file = path.join(__dirname, '..', '..', '..', 'tests', 'vectors', 'rfc4231.json');
  const { cases } = JSON.parse(fs.readFileSync(file, 'utf8'));
  assert.equal(cases.length, 6);
  for (const c of cases) {
    const key = Buffer.from(c.key, 'hex');
    const data = Buffer.from(c.data, 'hex');
    assert.equal(signWebhook(key, data), c.mac);
    assert.equal(crypto.createHmac('sha256', key).update(data).digest('hex'), c.mac);
    assert.equal(verifyWebhook(data, c.mac, key), true);
    assert.equal(verifyWebhook(data, c.mac.toUpperCase(), key), true);
    assert.equal(verifyWebhook(Buffer.concat([data, Buffer.from('x')]), c.mac, key), false);
  }
  for (let i = 0; i < 50; i++) {
    const secret = crypto.randomBytes(1 + (i % 70));
    const body = crypto.randomBytes(i * 13);
    const hex = crypto.createHmac('sha256', secret).update(body).digest('hex');
    assert.equal(signWebhook(secret, body), hex);
    assert.equal(verifyWebhook(body, hex, secret), true);
  }
  // strings are UTF-8, as with createHmac
  const s = 'whsec_é✓';
  const b = '{"event":"sms.delivered","to":"ключ"}';
  const hex = crypto.createHmac('sha256', s).update(b).digest('hex');
  assert.equal(signWebhook(s, b), hex);
  assert.equal(verifyWebhook(b, hex, s), true);
  assert.equal(verifyWebhook(Buffer.from(b), ` ${hex}\n`, Buffer.from(s)), true);
  // an empty body
  assert.equal(signWebhook('k', ''), crypto.createHmac('sha256', 'k').update('').digest('hex'));
  assert.equal(signWebhook('k', null), signWebhook('k', Buffer.alloc(0)));
  // malformed → false, never an exception
  for (const bad of [hex.slice(0, 63), hex.slice(0, 62), `zz${hex.slice(2)}`, '', null, undefined, 42, {}]) {
    assert.equal(verifyWebhook(b, bad, s), false, String(bad));
  }
  assert.equal(verifyWebhook(b, hex, ''), false);
  assert.equal(verifyWebhook(b, hex, 42), false);
  assert.equal(verifyWebhook({}, hex, s), false);
  refused(assert, () => signWebhook('', b), 'invalid_argument', 400);
  assert.throws(() => signWebhook(42, b), TypeError);
});

// ------------------------------------------------------------------------ Express

function listen(app) {
  return new Promise((resolve) => {
    const server = app.listen(0, '127.0.0.1', () => resolve(server));
  });
}

async function serve(t, vault, setup) {
  const app = express();
  setup(app);
  app.post('/v1/send', (req, res) => {
    res.json({
      raw: req.rawBody ? Buffer.from(req.rawBody).toString() : null,
      parsed: req.body === undefined ? null : req.body,
      credits: req.keyledger.credits,
    });
  });
  app.use((err, req, res, _next) => res.status(err.status || 500).json({ error: 'setup', message: err.message }));
  const server = await listen(app);
  t.after(() => new Promise((r) => server.close(r)));
  return `http://127.0.0.1:${server.address().port}`;
}

function post(base, headers, body = BODY) {
  return fetch(`${base}/v1/send`, { method: 'POST', body, headers: { 'Content-Type': 'application/json', ...headers } });
}

test('Express: the gate reads the raw body itself when no parser ran', async (t) => {
  const { vault, token, signingSecret } = signedVault();
  t.after(() => vault.close());
  const base = await serve(t, vault, (app) => app.use(keyledgerMiddleware(vault)));
  const auth = { Authorization: `Bearer ${token}` };

  let r = await post(base, { ...auth, 'X-KeyLedger-Signature': signRequest(signingSecret, 'POST', '/v1/send', BODY) });
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { raw: BODY.toString(), parsed: null, credits: 9 });

  r = await post(base, auth);
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('www-authenticate'), 'Bearer');
  assert.equal((await r.json()).error, 'invalid_signature');

  const stale = signRequest(signingSecret, 'POST', '/v1/send', BODY, Date.now() - 400_000);
  r = await post(base, { ...auth, 'X-KeyLedger-Signature': stale });
  assert.equal(r.status, 401);
  assert.equal((await r.json()).error, 'invalid_signature');

  const forged = signRequest(signingSecret, 'POST', '/v1/send', Buffer.from('{"to":"+1999"}'));
  r = await post(base, { ...auth, 'X-KeyLedger-Signature': forged });
  assert.equal(r.status, 401);

  r = await post(base, { ...auth, 'X-KeyLedger-Signature': 'garbage' });
  assert.equal(r.status, 401);
  assert.equal(vault.balance('a').credits, 9);
});

test('Express: express.json({ verify: captureRawBody }) before the gate, and express.raw()', async (t) => {
  const { vault, token, signingSecret } = signedVault();
  t.after(() => vault.close());
  const auth = { Authorization: `Bearer ${token}` };
  const sig = () => signRequest(signingSecret, 'POST', '/v1/send', BODY);

  const jsonBase = await serve(t, vault, (app) => {
    app.use(express.json({ verify: captureRawBody }));
    app.use(keyledgerMiddleware(vault));
  });
  let r = await post(jsonBase, { ...auth, 'X-KeyLedger-Signature': sig() });
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { raw: BODY.toString(), parsed: { to: '+15550100' }, credits: 9 });
  r = await post(jsonBase, auth);
  assert.equal(r.status, 401);

  const rawBase = await serve(t, vault, (app) => {
    app.use(express.raw({ type: '*/*' }));
    app.use(keyledgerMiddleware(vault));
  });
  r = await post(rawBase, { ...auth, 'X-KeyLedger-Signature': sig() });
  assert.equal(r.status, 200);
  assert.equal((await r.json()).credits, 8);

  // a 2-byte limit: the gate refuses to buffer more
  const tiny = await serve(t, vault, (app) => app.use(keyledgerMiddleware(vault, { limit: 2 })));
  r = await post(tiny, { ...auth, 'X-KeyLedger-Signature': sig() });
  assert.equal(r.status, 413);
});

test('Express: a body parsed without its raw bytes is a setup error, not a silent 401', async (t) => {
  const { vault, token, signingSecret } = signedVault();
  t.after(() => vault.close());
  const base = await serve(t, vault, (app) => {
    app.use(express.json());
    app.use(keyledgerMiddleware(vault));
  });
  const r = await post(base, {
    Authorization: `Bearer ${token}`,
    'X-KeyLedger-Signature': signRequest(signingSecret, 'POST', '/v1/send', BODY),
  });
  assert.equal(r.status, 500);
  const body = await r.json();
  assert.equal(body.error, 'setup');
  assert.match(body.message, /captureRawBody/);
  assert.equal(vault.balance('a').credits, 10);
});
