'use strict';
// `vault.authorizeHttp`: keyledger's HTTP gate (kl_authorize_http), which every host
// gate (Express here, ASGI, Elixir) runs on. The request's credential headers, target,
// signature, idempotency key and body go in; the status, response headers, JSON body and
// grant to use come out.

const native = require('./native');
const { KL_WOULD_BLOCK, KL_NEEDS_COMMIT } = require('./constants');

const outHeaders = [null];
const outBody = [null];
const outGrant = [null];
const outStatus = [0];

/** A header value or body as bytes: a string (as UTF-8) or a Buffer; absent → null. */
function bytes(name, v) {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  if (Buffer.isBuffer(v)) return v;
  if (Array.isArray(v)) return bytes(name, v[0]);
  throw new TypeError(`keyledger: ${name} must be a string, a Buffer or null`);
}

/** Options JSON; BigInt amounts become JSON integers. */
function optionsJson(o) {
  const out = {
    cost: o.cost,
    scope: o.scope,
    limits: o.limits,
    limit_cost: o.limitCost,
    replay: o.replay,
    case_insensitive: o.caseInsensitive,
    max_body: o.maxBody,
    now_ms: o.now instanceof Date ? o.now.getTime() : o.now,
    nonblocking: o.nonblocking === true ? true : undefined,
  };
  const text = JSON.stringify(out, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v === null ? undefined : v));
  return text.replace(/"(\d+)n"/g, '$1');
}

/**
 * Authorize one HTTP request through the core gate. `request`: `method`, `target` (the
 * raw request target as received), `authorization`, `apiKey`, `signature`,
 * `idempotencyKey`, `body` (string | Buffer | null), `bodyTooLarge`. `options`: `cost`,
 * `scope`, `limits`, `limitCost`, `replay` ('refuse' | 'pass'), `caseInsensitive`,
 * `maxBody`, `now`. Returns `{ status, headers: [[name, value]…], body, grant }` (grant
 * null for a refusal, whose JSON body is `body`).
 */
function authorizeHttp(handle, request, options, toGrant) {
  const args = prepare(handle, request, options);
  const st = native.kl_authorize_http(...args, outStatus, outHeaders, outBody, outGrant);
  return finish(st, outStatus, outHeaders, outBody, outGrant, toGrant);
}

/**
 * The same call without ever holding the event loop for argon2 or a commit wait: first
 * inline with `"nonblocking": true` (a key already verified here, and every refusal that
 * needs no argon2, is answered at once), and only when that says KL_WOULD_BLOCK, the
 * blocking call on a libuv worker thread (koffi's async calls; `offload(start, lane)` runs
 * `start(done)` when a worker slot of that lane is free: index.js). Resolves to what `authorizeHttp`
 * returns; a failed call (`{ st }`) too. Refusals are answers (status and body), so the
 * worker's call can fail only where the inline one would have (bad arguments) or on a
 * panic: `{ st, worker: true }`, whose last error (message, body) is out of reach here.
 */
function authorizeHttpAsync(handle, request, options, toGrant, offload) {
  const inline = authorizeHttp(handle, request, { ...options, nonblocking: true }, toGrant);
  if (inline.st !== KL_WOULD_BLOCK) return Promise.resolve(inline);
  // A commit wait goes to the commit lane, argon2 to the CPU lane (index.js).
  const lane = native.kl_last_would_block() === KL_NEEDS_COMMIT ? 'commit' : 'cpu';
  const args = prepare(handle, request, { ...options, nonblocking: false });
  const status = [0];
  const headers = [null];
  const body = [null];
  const grant = [null];
  return offload((done) => native.kl_authorize_http.async(...args, status, headers, body, grant, done), lane)
    .then((st) => (st === 0 ? finish(st, status, headers, body, grant, toGrant) : { st, worker: true }));
}

/** The arguments of kl_authorize_http before its out-parameters. */
function prepare(handle, request, options) {
  const r = request || {};
  if (typeof r.method !== 'string') throw new TypeError('keyledger: request.method must be a string');
  const target = bytes('request.target', r.target);
  if (target === null) throw new TypeError('keyledger: request.target must be a string or a Buffer');
  const args = [r.authorization, r.apiKey, r.signature, r.idempotencyKey, r.body].map((v, i) =>
    bytes(['authorization', 'apiKey', 'signature', 'idempotencyKey', 'body'][i], v));
  const json = optionsJson(options || {});
  const flat = [];
  for (const b of args) flat.push(b, b === null ? 0 : b.length);
  return [handle, r.method, Buffer.byteLength(r.method), target, target.length,
    ...flat, r.bodyTooLarge ? 1 : 0, json, Buffer.byteLength(json)];
}

function finish(st, status, outH, outB, outG, toGrant) {
  if (st !== 0) return { st };
  const headers = JSON.parse(native.takeString(outH[0]));
  const body = native.takeString(outB[0]);
  const grant = outG[0] === null ? null : toGrant(native.takeString(outG[0]));
  return { status: status[0], headers, body, grant };
}

module.exports = { authorizeHttp, authorizeHttpAsync };
