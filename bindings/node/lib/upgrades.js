'use strict';
// Gating HTTP upgrades (WebSockets, ...) that Express never sees once an 'upgrade' listener
// exists: `gateUpgrades` in express.js runs its middleware here, before every listener.

const { STATUS_CODES } = require('node:http');

const GATED = Symbol('keyledger.gateUpgrades');

/**
 * The response side of a refused upgrade: what the middleware needs of `res`
 * (`setHeader`, `statusCode`, `end`), written as a raw HTTP/1.1 response on the socket, which is then
 * closed. No handshake has happened: nothing of the upgraded protocol is ever sent.
 */
class UpgradeRefusal {
  constructor(socket) {
    this.socket = socket;
    this.headers = [];
    this.statusCode = 500;
    this.sent = false;
  }

  setHeader(name, value) {
    this.headers.push([name, value]);
  }

  end(text) {
    this.write(this.statusCode, text);
  }

  write(code, text) {
    const socket = this.socket;
    if (this.sent || socket.destroyed) return;
    this.sent = true;
    const payload = Buffer.from(text, 'utf8');
    const lines = [`HTTP/1.1 ${code} ${STATUS_CODES[code] || 'Error'}`];
    // Only the response headers keyledger chose (fixed names, numeric values).
    for (const [k, v] of this.headers) lines.push(`${k}: ${v}`);
    lines.push(`Content-Length: ${payload.length}`, 'Connection: close');
    socket.end(Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), payload]), () => socket.destroy());
  }

  fail() {
    this.headers = [['Content-Type', 'application/json']];
    this.write(500, JSON.stringify({ success: false, error: 'internal', message: 'the keyledger gate failed' }));
  }
}

/**
 * Run the gate `makeGate()` builds (a connect-style middleware) on every 'upgrade' event of
 * `server` before any 'upgrade' listener, present or future: a grant lets the event through,
 * a refusal is answered on the socket (UpgradeRefusal). See `gateUpgrades` in express.js.
 */
function gateUpgrades(server, makeGate) {
  if (!server || typeof server.emit !== 'function' || typeof server.on !== 'function') {
    throw new TypeError('gateUpgrades: the first argument must be an http or https server');
  }
  if (server[GATED]) throw new Error('gateUpgrades: this server\'s upgrades are already gated');
  const gate = makeGate();
  const emit = server.emit;
  server[GATED] = true;
  // Wrapping emit (rather than adding a listener) is the only way to run before every
  // 'upgrade' listener, present and future, and to stop the event when refused.
  server.emit = function emitGated(event, req, socket, head) {
    if (event !== 'upgrade') return emit.apply(this, arguments);
    const res = new UpgradeRefusal(socket);
    const self = this;
    let done = false;
    // The gate answers now (decided without blocking) or later (a worker thread ran the
    // check): a grant passes the event on, a refusal was written by the gate, an
    // error is a 500. The event is handled either way.
    const finish = (err) => {
      if (done) return;
      done = true;
      if (!err) {
        emit.call(self, event, req, socket, head);
        return;
      }
      if (!res.sent) res.fail();
    };
    try {
      const ret = gate(req, res, finish);
      if (ret && typeof ret.then === 'function') {
        ret.then(() => {
          if (!done && res.sent) done = true;
        }, finish);
      }
    } catch (err) {
      finish(err || new Error('the keyledger gate failed'));
    }
    return true;
  };
  return server;
}

module.exports = { UpgradeRefusal, gateUpgrades };
