'use strict';
// The raw body of a signed request, for the Express gate (express.js): where it is found,
// and reading it from the stream when no body parser has (see the rules in express.js).

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

module.exports = { DEFAULT_LIMIT, captureRawBody, readBody, rawBodyOf };
