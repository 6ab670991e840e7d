'use strict';
// Express (or any connect-style framework) middleware: gate every request with
// keyledger. Reads `Authorization: Bearer <token>`, authorizes `req.method` + `req.path`
// (the path without its query string), answers a refusal with its HTTP status and JSON
// body (plus `WWW-Authenticate: Bearer` on 401), and puts the grant in `req.keyledger`.

const { KeyLedgerError } = require('./index');

const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

/**
 * @param {import('./index').Vault} vault an open vault
 * @param {object} [options]
 * @param {string} [options.header='authorization'] the header that carries the token
 * @param {number|bigint|((req) => number|bigint|undefined)} [options.cost] credits to
 *   charge instead of the matched route's cost (a number, or a function of the request)
 * @param {boolean} [options.full=false] also put `scopes` and `ratelimits` in the grant
 * @param {string} [options.idempotencyHeader] a request header whose value is passed as
 *   the idempotency key (e.g. 'idempotency-key')
 */
function keyledgerMiddleware(vault, options = {}) {
  if (!vault || typeof vault.authorize !== 'function') {
    throw new TypeError('keyledgerMiddleware: the first argument must be a keyledger Vault');
  }
  const header = (options.header || 'authorization').toLowerCase();
  const { cost, full = false, idempotencyHeader } = options;

  return function keyledger(req, res, next) {
    const raw = req.headers[header];
    const value = Array.isArray(raw) ? raw[0] : raw;
    const m = typeof value === 'string' ? BEARER.exec(value) : null;
    // A missing or malformed header is refused exactly like a bad token: the core
    // answers `invalid_api_key` for the empty token, with its usual body.
    const token = m ? m[1] : '';
    const opts = { route: [req.method, req.path], full };
    const c = typeof cost === 'function' ? cost(req) : cost;
    if (c !== undefined && c !== null) opts.cost = c;
    if (idempotencyHeader) {
      const k = req.headers[idempotencyHeader.toLowerCase()];
      if (typeof k === 'string' && k !== '') opts.idempotencyKey = k;
    }
    let grant;
    try {
      grant = vault.authorize(token, opts);
    } catch (err) {
      if (!(err instanceof KeyLedgerError)) return next(err);
      if (err.status === 401) res.set('WWW-Authenticate', 'Bearer');
      if (err.status === 429 && err.body && err.body.retry_after !== undefined) {
        res.set('Retry-After', String(err.body.retry_after));
      }
      return res.status(err.status).json(err.body);
    }
    req.keyledger = grant;
    return next();
  };
}

module.exports = { keyledgerMiddleware };
