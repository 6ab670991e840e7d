import type { Vault, Grant, Amount } from './index';

export interface KeyledgerMiddlewareOptions {
  /** The header carrying `Bearer <token>` (default `'authorization'`). */
  header?: string;
  /** Credits to charge instead of the route's cost: a value, or a function of the request. */
  cost?: Amount | ((req: any) => Amount | undefined | null);
  /** Rate limits to apply besides the auto-applied ones: names, or a function of the request. */
  limits?: string[] | ((req: any) => string[] | undefined | null);
  /** The request's weight against every applied rate limit (default 1): a value, or a function of the request. */
  limitCost?: Amount | ((req: any) => Amount | undefined | null);
  /** Also put `scopes` and `ratelimits` in the grant (slower). */
  full?: boolean;
  /** A request header whose value becomes the idempotency key. */
  idempotencyHeader?: string;
  /** A repeated idempotency key: `'refuse'` (default) answers 409 `duplicate_request`; `'pass'` hands the replayed grant to the handler. */
  replay?: 'refuse' | 'pass';
  /** The header carrying a request signature (default `'x-keyledger-signature'`). */
  signatureHeader?: string;
  /** Where a signed request's raw body is (default: `req.rawBody`, a Buffer/string `req.body`, or the unread stream). */
  rawBody?: (req: any) => Buffer | Uint8Array | string;
  /** The most body bytes the gate reads itself (default 1 MiB; more is 413). */
  limit?: number;
  /**
   * Match the rules ignoring ASCII case. Default: as the app routes (`case sensitive
   * routing` off, Express's default, is insensitive; insensitive without an app). Pass
   * `true` when a case-insensitive `express.Router()` is mounted in a case-sensitive app.
   */
  caseInsensitive?: boolean;
}

/** A body-parser `verify` hook keeping the raw bytes in `req.rawBody`: `express.json({ verify: captureRawBody })`. */
export function captureRawBody(req: any, res: any, buf: Buffer): void;

/**
 * Express middleware: sets `req.keyledger` to the grant, or answers the refusal. A grant
 * with an applied rate limit sets `RateLimit-Limit`, `RateLimit-Remaining` and
 * `RateLimit-Reset`; a 429 sets `Retry-After` and the same three headers.
 */
export function keyledgerMiddleware(
  vault: Vault,
  options?: KeyledgerMiddlewareOptions,
): (req: any, res: any, next: (err?: unknown) => void) => void;

/**
 * Gate the upgrade requests (WebSockets, ...) of an http(s) server, which Express never
 * sees once an 'upgrade' listener exists: each is authorized like an ordinary request
 * before any 'upgrade' listener (present or future) runs. A refusal is a plain HTTP/1.1
 * response with the JSON body, then the socket is closed, before any handshake; a grant
 * goes in `req.keyledger`. Without this call, upgrades reach the upgrade listeners ungated.
 * `caseInsensitive` defaults to true. Returns the server.
 */
export function gateUpgrades<S extends import('node:http').Server>(
  server: S,
  vault: Vault,
  options?: Omit<KeyledgerMiddlewareOptions, 'rawBody' | 'limit'>,
): S;

declare global {
  namespace Express {
    interface Request {
      keyledger?: Grant;
      rawBody?: Buffer;
    }
  }
}
