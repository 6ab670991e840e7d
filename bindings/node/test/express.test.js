'use strict';
// The Express middleware end to end: a real HTTP server on 127.0.0.1, port 0.
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const express = require('express');
const { keyledgerMiddleware } = require('../express');
const { createApp } = require('../examples/server');
const { seeded } = require('../testlib/helpers');

function listen(app) {
  return new Promise((resolve) => {
    const server = app.listen(0, '127.0.0.1', () => resolve(server));
  });
}

/** Send raw bytes (for headers fetch would refuse to send) and read the response. */
function raw(port, bytes) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks = [];
    sock.on('data', (c) => chunks.push(c));
    sock.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const [head, ...rest] = text.split('\r\n\r\n');
      resolve({ status: Number(head.split(' ')[1]), head, body: rest.join('\r\n\r\n') });
    });
    sock.on('error', reject);
    sock.write(bytes); // no half-close: the gate may answer after the request is read
  });
}

test('Express middleware: grant, 401, 402, 403, hostile headers', async (t) => {
  const { vault, token, key } = seeded({ credits: 2, scopes: ['numbers:read', 'sms:send'] });
  const reader = vault.createKey('acct_42', 'reader', ['numbers:read']).token;
  const server = await listen(createApp(vault));
  t.after(() => new Promise((r) => server.close(() => { vault.close(); r(); })));
  const base = `http://127.0.0.1:${server.address().port}`;
  const auth = (tok) => ({ headers: { Authorization: `Bearer ${tok}` } });

  // grant: req.keyledger is set; the query string is not part of the path
  let r = await fetch(`${base}/api/v1/numbers/mine?page=2`, auth(token));
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { account: 'acct_42', numbers: ['+15550100'], credits: 2 });

  r = await fetch(`${base}/api/v1/messaging/send`, { method: 'POST', ...auth(token) });
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { sent: true, charged: 1, credits: 1 });

  // 401 without a token, with a bad one, or with another scheme; WWW-Authenticate set
  for (const headers of [{}, { Authorization: 'Bearer nope' }, { Authorization: `Basic ${token}` }, { Authorization: 'Bearer' }]) {
    r = await fetch(`${base}/api/v1/numbers/mine`, { headers });
    assert.equal(r.status, 401);
    assert.equal(r.headers.get('www-authenticate'), 'Bearer');
    const body = await r.json();
    assert.equal(body.error, 'invalid_api_key');
    assert.equal(body.success, false);
  }
  // case-insensitive scheme and surrounding spaces are fine
  r = await fetch(`${base}/api/v1/numbers/mine`, { headers: { Authorization: `bearer   ${token} ` } });
  assert.equal(r.status, 200);

  // 401 inactive
  vault.disableKey(key.keyId);
  r = await fetch(`${base}/api/v1/numbers/mine`, auth(token));
  assert.equal(r.status, 401);
  assert.equal((await r.json()).error, 'api_key_inactive');
  vault.enableKey(key.keyId);

  // 403 missing scope (with required), 403 route not allowed
  r = await fetch(`${base}/api/v1/messaging/send`, { method: 'POST', ...auth(reader) });
  assert.equal(r.status, 403);
  assert.equal(r.headers.get('www-authenticate'), null);
  assert.deepEqual(await r.json(), {
    success: false, error: 'missing_scope', required: 'sms:send', message: 'API key lacks the required scope "sms:send"',
  });
  r = await fetch(`${base}/admin`, auth(token));
  assert.equal(r.status, 403);
  assert.equal((await r.json()).error, 'route_not_allowed');

  // 402: spend the last credit, then one more
  r = await fetch(`${base}/api/v1/messaging/send`, { method: 'POST', ...auth(token) });
  assert.equal(r.status, 200);
  r = await fetch(`${base}/api/v1/messaging/send`, { method: 'POST', ...auth(token) });
  assert.equal(r.status, 402);
  const body = await r.json();
  assert.equal(body.error, 'insufficient_credits');
  assert.equal(body.credits, 0);
  assert.equal(body.required, 1);
  assert.equal(vault.balance('acct_42').credits, 0);

  // hostile Authorization headers: 401, and the server keeps serving
  const port = server.address().port;
  const hostile = [
    Buffer.from(`GET /api/v1/numbers/mine HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${'A'.repeat(10 * 1024)}\r\nConnection: close\r\n\r\n`),
    Buffer.from(`GET /api/v1/numbers/mine HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ключ_доступа_${'é'.repeat(40)}\r\nConnection: close\r\n\r\n`, 'utf8'),
    Buffer.concat([
      Buffer.from('GET /api/v1/numbers/mine HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer '),
      Buffer.from([0xff, 0xfe, 0x80, 0xc3, 0x28]),
      Buffer.from('\r\nConnection: close\r\n\r\n'),
    ]),
    Buffer.from(`GET /api/v1/numbers/mine HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token.replace(/_/g, '\u00e9')}\r\nConnection: close\r\n\r\n`, 'latin1'),
  ];
  for (const req of hostile) {
    const res = await raw(port, req);
    assert.equal(res.status, 401, res.head);
    assert.match(res.head, /WWW-Authenticate: Bearer/i);
    assert.equal(JSON.parse(res.body).error, 'invalid_api_key');
  }
  r = await fetch(`${base}/api/v1/numbers/mine`, auth(token));
  assert.equal(r.status, 200);
});

test('Express middleware: custom header and cost', async (t) => {
  const { vault, token } = seeded({ credits: 10 });
  const app = express();
  app.use(keyledgerMiddleware(vault, { header: 'X-Api-Key', cost: (req) => (req.query.big ? 5 : undefined), full: true }));
  app.get('/api/v1/numbers/mine', (req, res) => res.json(req.keyledger));
  const server = await listen(app);
  t.after(() => new Promise((r) => server.close(() => { vault.close(); r(); })));
  const base = `http://127.0.0.1:${server.address().port}`;
  let r = await fetch(`${base}/api/v1/numbers/mine`, { headers: { 'X-Api-Key': `Bearer ${token}` } });
  assert.equal(r.status, 200);
  let g = await r.json();
  assert.equal(g.charged, 0);
  assert.deepEqual(g.scopes, ['numbers:read', 'sms:send']);
  r = await fetch(`${base}/api/v1/numbers/mine?big=1`, { headers: { 'X-Api-Key': `Bearer ${token}` } });
  g = await r.json();
  assert.equal(g.charged, 5);
  assert.equal(g.credits, 5);
  r = await fetch(`${base}/api/v1/numbers/mine`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(r.status, 401);
  assert.throws(() => keyledgerMiddleware({}), TypeError);
});
