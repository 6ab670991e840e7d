'use strict';
// Express (or any connect-style framework) middleware: gate every request with
// keyledger. Reads `Authorization: Bearer <token>`, authorizes `req.method` + `req.path`
// (the path without its query string), answers a refusal with its HTTP status and JSON
// body (plus `WWW-Authenticate: Bearer` on 401), and puts the grant in `req.keyledger`.
//
// Signed requests (SPEC §7): when `X-KeyLedger-Signature` is present, its value and the
// raw request body go to `authorize`. The raw bytes are found, in this order:
//   1. `options.rawBody(req)` if given;
//   2. `req.rawBody` (Buffer or string) — set it with a body parser's verify hook,
//      `express.json({ verify: captureRawBody })`, mounted before the gate;
//   3. `req.body` when it is a Buffer (`express.raw()`) or a string (`express.text()`);
//   4. the request stream itself, when no body parser has read it yet: the gate reads it
//      (at most `options.limit` bytes, default 1 MiB, else 413) and keeps the bytes in
//      `req.rawBody`. Body parsers mounted *after* the gate then find the stream consumed
//      and leave `req.body` alone: mount them before it, with `verify: captureRawBody`.
// A body already parsed into an object without its raw bytes cannot be checked: that is a
// setup error, passed to `next(err)` (never silently granted or refused).
//
// Rate limits (SPEC §13): a grant to which a limit applied sets `RateLimit-Limit`,
// `RateLimit-Remaining` and `RateLimit-Reset` (seconds until the window is full again)
// for the tightest limit (`grant.ratelimit`); a 429 refusal sets `Retry-After` (seconds)
// and the same three headers (remaining 0).

const { KeyLedgerError } = require('./index');

const DEFAULT_LIMIT = 1 << 20;

/** A body parser `verify` hook that keeps the raw bytes in `req.rawBody`. */
function captureRawBody(req, _res, buf) {
  req.rawBody = Buffer.from(buf);
}

/** Read the rest of `req` into a Buffer, at most `limit` bytes. */
function readBody(req, limit) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    let done = false;
    const finish = (err, value) => {
      if (done) return;
      done = true;
      req.removeListener('data', onData);
      req.removeListener('end', onEnd);
      req.removeListener('error', onError);
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (c) => {
      size += c.length;
      if (size > limit) {
        const e = new Error(`request body larger than ${limit} bytes`);
        e.tooLarge = true;
        req.pause();
        finish(e);
        return;
      }
      chunks.push(c);
    };
    const onEnd = () => finish(null, Buffer.concat(chunks, size));
    const onError = (e) => finish(e);
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

/** The raw body bytes of `req` (see the rules above); a Promise only when it must read. */
function rawBodyOf(req, options) {
  if (typeof options.rawBody === 'function') return options.rawBody(req);
  if (Buffer.isBuffer(req.rawBody) || typeof req.rawBody === 'string') return req.rawBody;
  if (Buffer.isBuffer(req.body) || typeof req.body === 'string') return req.body;
  const unread = !req.readableEnded && !req.readableDidRead;
  if (unread && req.body === undefined) {
    return readBody(req, options.limit || DEFAULT_LIMIT).then((buf) => {
      req.rawBody = buf;
      return buf;
    });
  }
  if (req.body === undefined || req.body === null) return Buffer.alloc(0);
  const e = new Error(
    'keyledgerMiddleware: a signed request needs its raw body, but it was already parsed. ' +
      'Mount the body parser with `verify: captureRawBody` (from keyledger/express), use ' +
      'express.raw(), or mount the gate before any body parser.',
  );
  e.status = 500;
  throw e;
}

const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

/**
 * @param {import('./index').Vault} vault an open vault
 * @param {object} [options]
 * @param {string} [options.header='authorization'] the header that carries the token
 * @param {number|bigint|((req) => number|bigint|undefined)} [options.cost] credits to
 *   charge instead of the matched route's cost (a number, or a function of the request)
 * @param {string[]|((req) => string[]|undefined)} [options.limits] names of rate limits
 *   to apply besides the auto-applied ones (an array, or a function of the request)
 * @param {number|bigint|((req) => number|bigint|undefined)} [options.limitCost] the
 *   request's weight against every applied rate limit (default 1)
 * @param {boolean} [options.full=false] also put `scopes` and `ratelimits` in the grant
 * @param {string} [options.idempotencyHeader] a request header whose value is passed as
 *   the idempotency key (e.g. 'idempotency-key')
 * @param {'refuse'|'pass'} [options.replay='refuse'] a repeat of an idempotency key:
 *   'refuse' answers 409 `duplicate_request` (body: the first call's `charged` and
 *   `first_at`) without calling the handler; 'pass' calls it with the replayed grant
 *   (`req.keyledger.replayed`), for an app that serves its stored response itself
 * @param {string} [options.signatureHeader='x-keyledger-signature'] the header carrying a
 *   request signature (`t=…,v2=…`, covering the query string as sent)
 * @param {(req) => Buffer|string} [options.rawBody] where to find a signed request's raw
 *   body (default: see the rules at the top of this file)
 * @param {number} [options.limit=1048576] the most body bytes the gate reads itself
 */
function keyledgerMiddleware(vault, options = {}) {
  if (!vault || typeof vault.authorize !== 'function') {
    throw new TypeError('keyledgerMiddleware: the first argument must be a keyledger Vault');
  }
  const header = (options.header || 'authorization').toLowerCase();
  const signatureHeader = (options.signatureHeader || 'x-keyledger-signature').toLowerCase();
  const { cost, full = false, idempotencyHeader, limits, limitCost } = options;
  const replay = options.replay === undefined ? 'refuse' : options.replay;
  if (replay !== 'refuse' && replay !== 'pass') {
    throw new TypeError("keyledgerMiddleware: replay must be 'refuse' or 'pass'");
  }

  function refuse(res, err) {
    if (err.status === 401) res.set('WWW-Authenticate', 'Bearer');
    if (err.status === 429 && err.body && err.body.retry_after !== undefined) {
      res.set('Retry-After', String(err.body.retry_after));
      if (err.body.max !== undefined) {
        res.set('RateLimit-Limit', String(err.body.max));
        res.set('RateLimit-Remaining', '0');
        res.set('RateLimit-Reset', String(err.body.retry_after));
      }
    }
    return res.status(err.status).json(err.body);
  }

  function decide(req, res, next, token, opts) {
    let grant;
    try {
      grant = vault.authorize(token, opts);
    } catch (err) {
      if (!(err instanceof KeyLedgerError)) return next(err);
      return refuse(res, err);
    }
    req.keyledger = grant;
    const limit = grant.ratelimit;
    if (limit) {
      res.set('RateLimit-Limit', String(limit.max));
      res.set('RateLimit-Remaining', String(limit.remaining));
      res.set('RateLimit-Reset', String(Math.max(0, Math.ceil((limit.resetMs - Date.now()) / 1000))));
    }
    return next();
  }

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
    const l = typeof limits === 'function' ? limits(req) : limits;
    if (l !== undefined && l !== null) opts.limits = l;
    const w = typeof limitCost === 'function' ? limitCost(req) : limitCost;
    if (w !== undefined && w !== null) opts.limitCost = w;
    if (idempotencyHeader) {
      const k = req.headers[idempotencyHeader.toLowerCase()];
      if (typeof k === 'string' && k !== '') {
        opts.idempotencyKey = k;
        opts.onReplay = replay === 'pass' ? 'grant' : 'refuse';
      }
    }
    const sigRaw = req.headers[signatureHeader];
    const signature = Array.isArray(sigRaw) ? sigRaw[0] : sigRaw;
    if (typeof signature !== 'string' || signature === '') {
      return decide(req, res, next, token, opts);
    }
    opts.signature = signature;
    // A signature covers the query string as sent (format 2).
    const qi = typeof req.originalUrl === 'string' ? req.originalUrl.indexOf('?') : -1;
    if (qi >= 0 && qi + 1 < req.originalUrl.length) opts.query = req.originalUrl.slice(qi + 1);
    let body;
    try {
      body = rawBodyOf(req, options);
    } catch (err) {
      return next(err);
    }
    if (body && typeof body.then === 'function') {
      return body.then(
        (b) => {
          opts.body = b;
          decide(req, res, next, token, opts);
        },
        (err) => {
          if (err && err.tooLarge) {
            return res.status(413).json({ success: false, error: 'payload_too_large', message: err.message });
          }
          return next(err);
        },
      );
    }
    opts.body = body;
    return decide(req, res, next, token, opts);
  };
}

module.exports = { keyledgerMiddleware, captureRawBody };
