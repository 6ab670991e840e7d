'use strict';
// The shared HTTP gate cases (tests/gates/http_cases.json) through the Express middleware
// on a real Express server, over real HTTP: the same table the core (Rust), the ASGI
// middleware and the Elixir gate run.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const express = require('express');
const { Vault } = require('..');
const { keyledgerMiddleware } = require('../express');
const { vaultPath } = require('../testlib/helpers');

const TABLE = JSON.parse(
  fs.readFileSync(path.resolve(__dirname, '..', '..', '..', 'tests', 'gates', 'http_cases.json'), 'utf8'),
);

function seed(name) {
  const vault = new Vault(vaultPath(), { argon2: { m_kib: 8, t: 1, p: 1 } });
  for (const r of TABLE.rules) vault.addRoute(r.method, r.pattern, r.scope, { cost: r.cost });
  const k = TABLE.keys[name];
  vault.createAccount('acct', { credits: k.credits });
  const style = k.style || 'prefixed';
  const { token, key } = vault.createKey('acct', name, k.scopes, { style });
  assert.equal(key.style, style);
  assert.equal(token.includes(':'), style === 'colon');
  if (k.ratelimit) vault.setRatelimit(k.ratelimit.name, k.ratelimit.limit, k.ratelimit.duration_ms, { keyId: key.keyId });
  return { vault, token };
}

/** One raw request (the target is sent exactly as written). */
function send(port, method, target, headers, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: target, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

for (const c of TABLE.cases) {
  test(`gate case through Express: ${c.name}`, async (t) => {
    const { vault, token } = seed(c.key);
    const o = c.options;
    const app = express();
    app.use(keyledgerMiddleware(vault, {
      replay: o.replay, caseInsensitive: o.case_insensitive, cost: o.cost,
      limit: o.max_body, idempotencyHeader: 'idempotency-key',
    }));
    app.use((req, res) => res.json({ ok: true, account: req.keyledger.accountId }));
    const server = await new Promise((r) => { const s = app.listen(0, '127.0.0.1', () => r(s)); });
    t.after(() => new Promise((r) => server.close(() => { vault.close(); r(); })));
    const headers = {};
    for (const [k, v] of Object.entries(c.request.headers)) {
      headers[k] = v.replace('{token}', token).replace('{long}', 'a'.repeat(8200));
    }
    let r;
    for (let i = 0; i < (c.repeat || 1); i += 1) {
      r = await send(server.address().port, c.request.method, c.request.target, headers, c.request.body);
    }
    const e = c.expect;
    assert.equal(r.status, e.status, r.text);
    if (c.request.method !== 'HEAD') assert.equal(JSON.parse(r.text).error ?? null, e.code);
    for (const [k, v] of Object.entries(e.headers || {})) {
      assert.ok(k in r.headers, k);
      if (v !== '*') assert.equal(r.headers[k], v, k);
    }
    for (const k of e.absent || []) assert.ok(!(k in r.headers), k);
    assert.equal(vault.balance('acct').credits, e.credits);
    if (e.audited) assert.ok(vault.audit({ action: 'auth_refused' }).some((a) => a.keyId === null || a.keyId === undefined));
  });
}
