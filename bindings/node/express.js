'use strict';
// Express (or any connect-style framework) middleware: gate every request with
// keyledger. A thin adapter over the core's HTTP gate (`vault.authorizeHttp`), which
// the ASGI and Elixir gates share: it reads `Authorization: Bearer <token>` (scheme in any
// case, one or more spaces, no tab), else `X-Api-Key`; a missing, malformed or oversized
// (over 4 KiB) credential is 401 `invalid_api_key`, audited like a bad key. It authorizes `req.method` and the raw
// request target (`req.originalUrl`: the request line's target exactly as the client sent
// it, query string and absolute-form included; nothing is decoded here), answers a
// refusal with its HTTP status and JSON body (plus `WWW-Authenticate: Bearer` on 401),
// and puts the grant in `req.keyledger`.
//
// The target is read by keyledger's HTTP gate (`vault.authorizeRequest`), which decodes it
// once and refuses with 400 `ambiguous_path` any target a router could read two ways
// (encoded `/ ? # \` or NUL, `.`/`..` segments in any encoding, empty segments a rule's
// wildcard or parameter would swallow). HEAD is matched and charged like GET, as Express
// serves it with the GET handler. Case: rules match case-insensitively unless the app's
// `case sensitive routing` setting is on (`options.caseInsensitive` overrides), so that
// `/SEND` is charged as the `/send` rule Express routes it to. An `express.Router()` made
// without `caseSensitive: true` routes case-insensitively even in a case-sensitive app:
// then pass `caseInsensitive: true`. The gate checks the whole target the client sent,
// mount path included (in a router mounted at `/v1`, the rules must name `/v1/...`):
// mount it before anything that rewrites `req.url` or `req.method` (method-override).
//
// WebSockets and other upgrades: once any 'upgrade' listener is on the http server (ws,
// socket.io, ...), Node hands upgrade requests to those listeners and never to Express,
// so this middleware never sees them. Call `gateUpgrades(server, vault, options)` to gate
// them too; without it they reach the upgrade handlers ungated.
//
// Signed requests: when `X-KeyLedger-Signature` is present, its value and the
// raw request body go to `authorize`. The raw bytes are found, in this order:
//   1. `options.rawBody(req)` if given;
//   2. `req.rawBody` (Buffer or string) — set it with a body parser's verify hook,
//      `express.json({ verify: captureRawBody })`, mounted before the gate;
//   3. `req.body` when it is a Buffer (`express.raw()`) or a string (`express.text()`);
//   4. the request stream itself, when no body parser has read it yet: the gate reads it
//      (at most `options.limit` bytes, default 1 MiB, else 413 `payload_too_large`) and keeps the bytes in
//      `req.rawBody`. Body parsers mounted *after* the gate then find the stream consumed
//      and leave `req.body` alone: mount them before it, with `verify: captureRawBody`.
// A body already parsed into an object without its raw bytes cannot be checked: that is a
// setup error, passed to `next(err)` (never silently granted or refused).
//
// Rate limits: a grant to which a limit applied sets `RateLimit-Limit`,
// `RateLimit-Remaining` and `RateLimit-Reset` (seconds until the window is full again)
// for the tightest limit (`grant.ratelimit`); a 429 refusal sets `Retry-After` (seconds)
// and the same three headers (remaining 0).

const { DEFAULT_LIMIT, captureRawBody, rawBodyOf } = require('./lib/raw-body');
const upgrades = require('./lib/upgrades');

/** The first value of a request header (Node joins or arrays some), or undefined. */
function headerOf(req, name) {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** The raw request target: Express keeps it in `req.originalUrl` (`req.url` elsewhere). */
function targetOf(req) {
  return typeof req.originalUrl === 'string' ? req.originalUrl : req.url;
}

/**
 * Whether the gate matches case-insensitively: `options.caseInsensitive` when given, else
 * as the app routes (Express: `case sensitive routing` off, its default, is insensitive;
 * without an app, connect-style mounting is insensitive too).
 */
function caseInsensitiveFor(req, option) {
  if (option !== undefined && option !== null) return option;
  const app = req.app;
  if (app && typeof app.get === 'function') return !app.get('case sensitive routing');
  return true;
}

/** A per-request option: a value, or a function of the request. */
function perRequest(v, req) {
  return typeof v === 'function' ? v(req) : v;
}

/**
 * @param {import('./index').Vault} vault an open vault
 * @param {object} [options]
 * @param {string} [options.header='authorization'] the header that carries
 *   `Bearer <token>` (with `authorization`, a bare token in `X-Api-Key` is read too)
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
 * @param {boolean} [options.caseInsensitive] match the rules ignoring ASCII case (default:
 *   as the app routes, from its `case sensitive routing` setting; insensitive without one)
 */
function keyledgerMiddleware(vault, options = {}) {
  if (!vault || typeof vault.authorizeHttp !== 'function') {
    throw new TypeError('keyledgerMiddleware: the first argument must be a keyledger Vault');
  }
  const header = (options.header || 'authorization').toLowerCase();
  const signatureHeader = (options.signatureHeader || 'x-keyledger-signature').toLowerCase();
  const { cost, full = false, idempotencyHeader, limits, limitCost, caseInsensitive } = options;
  const replay = options.replay === undefined ? 'refuse' : options.replay;
  if (replay !== 'refuse' && replay !== 'pass') {
    throw new TypeError("keyledgerMiddleware: replay must be 'refuse' or 'pass'");
  }
  if (caseInsensitive !== undefined && caseInsensitive !== null && typeof caseInsensitive !== 'boolean') {
    throw new TypeError('keyledgerMiddleware: caseInsensitive must be a boolean');
  }

  // The core gate decides and builds the response (status, headers, JSON body), inline
  // when it can without blocking, else on a libuv worker thread
  // (`vault.authorizeHttpAsync`): a cold key's argon2 run, a commit wait, or a flood of
  // forged tokens never holds the event loop.
  function decide(req, res, next, request) {
    let pending;
    try {
      const o = {
        full, replay, cost: perRequest(cost, req), limits: perRequest(limits, req),
        limitCost: perRequest(limitCost, req), caseInsensitive: caseInsensitiveFor(req, caseInsensitive),
        maxBody: request.maxBody,
      };
      pending = typeof vault.authorizeHttpAsync === 'function'
        ? vault.authorizeHttpAsync(request, o)
        : Promise.resolve(vault.authorizeHttp(request, o));
    } catch (err) {
      return next(err);
    }
    // next() is called once, outside the promise chain's error path: an exception after
    // it belongs to the app, and one before it (setting headers) goes to next(err), never
    // to an unhandled rejection.
    let called = false;
    const go = (err) => {
      if (called) return;
      called = true;
      next(err);
    };
    return pending.then((out) => {
      for (const [name, value] of out.headers) res.setHeader(name, value);
      if (!out.grant) {
        res.statusCode = out.status;
        res.end(out.body);
        return;
      }
      req.keyledger = out.grant;
      go();
    }).catch(go);
  }

  return function keyledger(req, res, next) {
    const request = {
      method: req.method, target: targetOf(req),
      // A custom header carries `Bearer <token>` too; X-Api-Key only beside Authorization.
      authorization: headerOf(req, header),
      apiKey: header === 'authorization' ? headerOf(req, 'x-api-key') : null,
      idempotencyKey: idempotencyHeader ? headerOf(req, idempotencyHeader.toLowerCase()) : null,
      signature: headerOf(req, signatureHeader),
      // A body the gate did not read itself is checked whatever its size.
      maxBody: Number.MAX_SAFE_INTEGER,
    };
    if (request.signature === undefined || request.signature === '') return decide(req, res, next, { ...request, signature: null });
    let body;
    try {
      body = rawBodyOf(req, options);
    } catch (err) {
      return next(err);
    }
    if (!body || typeof body.then !== 'function') return decide(req, res, next, { ...request, body });
    const maxBody = options.limit || DEFAULT_LIMIT;
    return body.then(
      (b) => decide(req, res, next, { ...request, body: b, maxBody }),
      (err) => (err && err.tooLarge ? decide(req, res, next, { ...request, bodyTooLarge: true, maxBody }) : next(err)),
    );
  };
}

/**
 * Gate the HTTP upgrade requests (WebSockets, ...) of a Node http(s) server, which Express
 * middleware never sees once an 'upgrade' listener exists. Every 'upgrade' event is
 * authorized like an ordinary request (its method, usually GET, and its raw target, with
 * the options of `keyledgerMiddleware`) before any 'upgrade' listener runs, including
 * listeners added later (ws's `new WebSocketServer({ server })`): a refusal is answered
 * with a plain `HTTP/1.1 401/402/403/429/400 ...` response and the JSON body, and the
 * socket is closed before any handshake; a grant is put in `req.keyledger` and the event
 * goes on to the listeners. An upgrade carries no body: a signed upgrade is verified
 * against the empty body. `caseInsensitive` defaults to true (how Express and connect
 * route); pass `false` when the upgrade handlers match paths byte for byte.
 *
 * Without this call, upgrades are gated only when no 'upgrade' listener exists (Node then
 * hands them to Express as ordinary requests); with one, they reach it ungated.
 *
 * @param {import('node:http').Server} server the http or https server
 * @param {import('./index').Vault} vault an open vault
 * @param {object} [options] as for `keyledgerMiddleware` (`header`, `cost`, `limits`, ...)
 * @returns the server
 */
function gateUpgrades(server, vault, options = {}) {
  const body = Buffer.alloc(0);
  return upgrades.gateUpgrades(server, () => keyledgerMiddleware(vault, { ...options, rawBody: () => body }));
}

module.exports = { keyledgerMiddleware, captureRawBody, gateUpgrades };
