'use strict';
// Upgrades (WebSockets) through the keyledger gate: a real http server on 127.0.0.1 and raw
// `net` sockets, so the handshake bytes are exactly what a browser or an attacker sends.
//
// The bug these pin: Express middleware never sees an upgrade request once the server has
// an 'upgrade' listener (ws, socket.io), so a WebSocket route was reached with no key at
// all. `gateUpgrades` authorizes every upgrade before any listener runs.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const net = require('node:net');
const express = require('express');
const { keyledgerMiddleware, gateUpgrades } = require('../express');
const { seeded } = require('../testlib/helpers');

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

/** Send `bytes` and read until the server closes or `until` matches what came back. */
function exchange(port, bytes, until) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks = [];
    let done = false;
    const finish = (closed) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      const [head, ...rest] = text.split('\r\n\r\n');
      resolve({ status: Number(head.split(' ')[1]), head, body: rest.join('\r\n\r\n'), closed });
    };
    const timer = setTimeout(() => finish(false), 5000);
    sock.on('data', (c) => {
      chunks.push(c);
      if (until && until.test(Buffer.concat(chunks).toString('latin1'))) finish(false);
    });
    sock.on('end', () => finish(true));
    sock.on('close', () => finish(true));
    sock.on('error', reject);
    sock.write(bytes);
  });
}

function upgradeRequest(target, token, extra = '') {
  const auth = token === null ? '' : `Authorization: Bearer ${token}\r\n`;
  return Buffer.from(
    `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth}Upgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`,
    'latin1',
  );
}

/** A vault with a paid WebSocket route, a free catch-all, and two keys. */
function wsVault() {
  const { vault, token } = seeded({ credits: 5 });
  vault.addRoute('GET', '/ws/quotes', 'quotes:stream', { cost: 2 });
  vault.addRoute('*', '/*', 'public');
  const publicOnly = vault.createKey('acct_42', 'public', ['public']).token;
  const streamer = vault.createKey('acct_42', 'streamer', ['quotes:stream', 'public']).token;
  return { vault, token, publicOnly, streamer };
}

/** The 101 answer a WebSocket server sends (enough for the test: no frames follow). */
function accept(seen) {
  return (req, socket) => {
    seen.push({ url: req.url, grant: req.keyledger });
    socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
  };
}

test('gateUpgrades refuses an upgrade before any upgrade listener runs, listeners added later included', async (t) => {
  const { vault, publicOnly, streamer } = wsVault();
  const server = http.createServer(express().use(keyledgerMiddleware(vault)));
  const early = [];
  server.on('upgrade', accept(early));
  gateUpgrades(server, vault);
  const late = [];
  server.on('upgrade', (req) => late.push(req.url)); // e.g. new WebSocketServer({ server })
  const port = await listen(server);
  t.after(() => new Promise((r) => server.close(() => { vault.close(); r(); })));

  // no key: a plain 401 with the JSON body, then the socket is closed; no handshake
  let r = await exchange(port, upgradeRequest('/ws/quotes', null));
  assert.equal(r.status, 401, r.head);
  assert.match(r.head, /^HTTP\/1\.1 401 Unauthorized\r\n/);
  assert.match(r.head, /\r\nWWW-Authenticate: Bearer/i);
  assert.match(r.head, /\r\nContent-Type: application\/json/i);
  assert.equal(JSON.parse(r.body).error, 'invalid_api_key');
  assert.equal(r.closed, true);
  assert.doesNotMatch(r.head, /101|Upgrade: websocket/);

  // a key without the WebSocket route's scope: 403 missing_scope
  r = await exchange(port, upgradeRequest('/ws/quotes', publicOnly));
  assert.equal(r.status, 403, r.head);
  assert.equal(JSON.parse(r.body).required, 'quotes:stream');
  // a case-folded target is matched as a case-insensitive router would route it
  r = await exchange(port, upgradeRequest('/WS/Quotes', publicOnly));
  assert.equal(r.status, 403, r.head);
  // an ambiguous target is refused too, never matched to the free catch-all
  r = await exchange(port, upgradeRequest('/ws/%2e%2e/ws/quotes', publicOnly));
  assert.equal(r.status, 400, r.head);
  assert.equal(JSON.parse(r.body).error, 'ambiguous_path');
  assert.deepEqual(early, []);
  assert.deepEqual(late, []);
  assert.equal(vault.balance('acct_42').credits, 5);

  // granted: charged like a GET of the route, the grant is on the request
  r = await exchange(port, upgradeRequest('/ws/quotes?symbol=X', streamer), /\r\n\r\n/);
  assert.equal(r.status, 101, r.head);
  assert.equal(early.length, 1);
  assert.equal(early[0].url, '/ws/quotes?symbol=X');
  assert.equal(early[0].grant.charged, 2);
  assert.deepEqual(late, ['/ws/quotes?symbol=X']);
  assert.equal(vault.balance('acct_42').credits, 3);

  // 402 once the credits are gone (3 left, 2 a connection)
  r = await exchange(port, upgradeRequest('/ws/quotes', streamer), /\r\n\r\n/);
  assert.equal(r.status, 101);
  r = await exchange(port, upgradeRequest('/ws/quotes', streamer));
  assert.equal(r.status, 402, r.head);
  assert.equal(JSON.parse(r.body).error, 'insufficient_credits');
  assert.equal(early.length, 2);

  // ordinary requests still go to Express, gated by the middleware
  r = await exchange(port, Buffer.from(`GET /ws/quotes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${publicOnly}\r\nConnection: close\r\n\r\n`));
  assert.equal(r.status, 403);
  assert.throws(() => gateUpgrades(server, vault), /already gated/);
});

test('gateUpgrades: caseInsensitive false matches upgrade targets byte for byte', async (t) => {
  const { vault, publicOnly } = wsVault();
  const server = http.createServer((req, res) => res.end());
  const seen = [];
  server.on('upgrade', accept(seen));
  gateUpgrades(server, vault, { caseInsensitive: false });
  const port = await listen(server);
  t.after(() => new Promise((r) => server.close(() => { vault.close(); r(); })));
  // `/WS/Quotes` is then not the paid rule: the free catch-all decides, and the
  // (byte-for-byte) upgrade handler is the app's to route
  const r = await exchange(port, upgradeRequest('/WS/Quotes', publicOnly), /\r\n\r\n/);
  assert.equal(r.status, 101, r.head);
  assert.equal(seen[0].grant.charged, 0);
  assert.throws(() => gateUpgrades({}, vault), TypeError);
});

test('without an upgrade listener, Node hands the upgrade to Express and the middleware gates it', async (t) => {
  const { vault, publicOnly } = wsVault();
  const app = express();
  app.use(keyledgerMiddleware(vault));
  const ran = [];
  app.get('/ws/quotes', (req, res) => { ran.push(req.url); res.json({ ok: true }); });
  const server = http.createServer(app);
  const port = await listen(server);
  t.after(() => new Promise((r) => server.close(() => { vault.close(); r(); })));
  const r = await exchange(port, upgradeRequest('/ws/quotes', publicOnly), /\r\n\r\n\{[\s\S]*\}$/);
  assert.equal(r.status, 403, r.head);
  assert.deepEqual(ran, []);
});
