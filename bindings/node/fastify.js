'use strict';
// Fastify plugin: gate every request of the scope it is registered in with keyledger, a
// thin adapter over the core's HTTP gate (`vault.authorizeHttpAsync`), as the Express
// middleware is.
//
//   const fastify = require('fastify')();
//   fastify.register(require('keyledger/fastify'), { vault });
//   fastify.get('/v1/numbers', (request) => ({ account: request.keyledger.accountId }));
//
// An `onRequest` hook reads `Authorization: Bearer <token>` (else a bare token in
// `X-Api-Key`), authorizes the method and the raw request target (`request.raw.url`: as
// the client sent it, query string included, nothing decoded here; the gate refuses with
// 400 `ambiguous_path` any target a router could read two ways), and answers a refusal
// with the core's status, headers (`WWW-Authenticate`, `Retry-After`, `RateLimit-*`) and
// JSON body; a grant goes to `request.keyledger` (its `RateLimit-*` headers to the
// reply). The call is made inline when it can be answered without blocking, else on a
// libuv worker thread: a cold key's argon2 run or a commit wait never holds the event loop.
//
// Signed requests (`X-KeyLedger-Signature`): the signature covers the raw body, which
// Fastify has not read yet at `onRequest`. Such requests are gated in a `preParsing` hook
// instead: the gate reads the body (at most `limit` bytes, default 1 MiB, else 413
// `payload_too_large`), authorizes it, and hands the same bytes on to Fastify's parser.
//
// The plugin is not encapsulated (it applies to the scope that registers it, like
// fastify-plugin's): register it inside a prefixed plugin to gate only that scope. Case:
// rules match case-insensitively only when the router does (Fastify's `caseSensitive:
// false`); `caseInsensitive` overrides.

const { Readable } = require('node:stream');
const { DEFAULT_LIMIT } = require('./lib/raw-body');

function headerOf(request, name) {
  const v = request.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function perRequest(v, request) {
  return typeof v === 'function' ? v(request) : v;
}

/** Read a payload stream into one Buffer; rejects `{ tooLarge: true }` past `limit` bytes. */
function readAll(stream, limit) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    let over = false;
    stream.on('data', (c) => {
      if (over) return;
      size += c.length;
      if (size > limit) {
        over = true;
        return;
      }
      chunks.push(c);
    });
    stream.on('end', () => (over ? reject(Object.assign(new Error('payload too large'), { tooLarge: true })) : resolve(Buffer.concat(chunks))));
    stream.on('error', reject);
  });
}

/**
 * @param {import('fastify').FastifyInstance} fastify
 * @param {object} options `vault` (an open Vault, required), and as for the Express
 *   middleware: `header`, `cost`, `limits`, `limitCost` (values or functions of the
 *   request), `full`, `idempotencyHeader`, `replay` ('refuse' | 'pass'),
 *   `signatureHeader`, `limit`, `caseInsensitive`
 */
async function keyledgerFastify(fastify, options) {
  const { vault } = options || {};
  if (!vault || typeof vault.authorizeHttpAsync !== 'function') {
    throw new TypeError('keyledger/fastify: options.vault must be a keyledger Vault');
  }
  const header = (options.header || 'authorization').toLowerCase();
  const signatureHeader = (options.signatureHeader || 'x-keyledger-signature').toLowerCase();
  const { cost, full = false, idempotencyHeader, limits, limitCost } = options;
  const replay = options.replay === undefined ? 'refuse' : options.replay;
  if (replay !== 'refuse' && replay !== 'pass') throw new TypeError("keyledger/fastify: replay must be 'refuse' or 'pass'");
  let { caseInsensitive } = options;
  if (caseInsensitive !== undefined && caseInsensitive !== null && typeof caseInsensitive !== 'boolean') {
    throw new TypeError('keyledger/fastify: caseInsensitive must be a boolean');
  }
  if (caseInsensitive === undefined || caseInsensitive === null) {
    caseInsensitive = fastify.initialConfig && fastify.initialConfig.caseSensitive === false;
  }
  const limit = options.limit || DEFAULT_LIMIT;

  if (!fastify.hasRequestDecorator('keyledger')) fastify.decorateRequest('keyledger', null);

  function requestOf(request) {
    return {
      method: request.raw.method,
      target: request.raw.url,
      authorization: headerOf(request, header),
      apiKey: header === 'authorization' ? headerOf(request, 'x-api-key') : null,
      idempotencyKey: idempotencyHeader ? headerOf(request, idempotencyHeader.toLowerCase()) : null,
      signature: null,
      maxBody: Number.MAX_SAFE_INTEGER,
    };
  }

  /** Authorize; true when granted (request.keyledger set), false when the reply was sent. */
  async function gate(request, reply, r) {
    const out = await vault.authorizeHttpAsync(r, {
      full, replay, cost: perRequest(cost, request), limits: perRequest(limits, request),
      limitCost: perRequest(limitCost, request), caseInsensitive, maxBody: r.maxBody,
    });
    for (const [name, value] of out.headers) reply.header(name, value);
    if (!out.grant) {
      reply.code(out.status).type('application/json; charset=utf-8').send(out.body);
      return false;
    }
    request.keyledger = out.grant;
    return true;
  }

  const signed = (request) => {
    const s = headerOf(request, signatureHeader);
    return s !== undefined && s !== '';
  };

  fastify.addHook('onRequest', async (request, reply) => {
    if (signed(request)) return undefined; // gated in preParsing, with the body
    if (!(await gate(request, reply, requestOf(request)))) return reply;
    return undefined;
  });

  fastify.addHook('preParsing', async (request, reply, payload) => {
    if (!signed(request) || request.keyledger !== null) return payload;
    const r = { ...requestOf(request), signature: headerOf(request, signatureHeader), maxBody: limit };
    let body;
    try {
      body = await readAll(payload, limit);
    } catch (err) {
      if (!err.tooLarge) throw err;
      await gate(request, reply, { ...r, bodyTooLarge: true });
      return reply;
    }
    if (!(await gate(request, reply, { ...r, body }))) return reply;
    const again = Readable.from([body]);
    again.receivedEncodedLength = body.length;
    return again;
  });

  // Fail closed: a request of this scope reaches its handler only with a grant.
  fastify.addHook('preHandler', async (request) => {
    if (request.keyledger === null) throw new Error('keyledger/fastify: a request reached its handler without a grant');
  });
}

keyledgerFastify[Symbol.for('skip-override')] = true;
keyledgerFastify[Symbol.for('fastify.display-name')] = 'keyledger';
keyledgerFastify.default = keyledgerFastify;
keyledgerFastify.keyledgerFastify = keyledgerFastify;

module.exports = keyledgerFastify;
