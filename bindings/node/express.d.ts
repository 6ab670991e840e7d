import type { Vault, Grant, Amount } from './index';

export interface KeyledgerMiddlewareOptions {
  /** The header carrying `Bearer <token>` (default `'authorization'`). */
  header?: string;
  /** Credits to charge instead of the route's cost: a value, or a function of the request. */
  cost?: Amount | ((req: any) => Amount | undefined | null);
  /** Also put `scopes` and `ratelimits` in the grant (slower). */
  full?: boolean;
  /** A request header whose value becomes the idempotency key. */
  idempotencyHeader?: string;
  /** The header carrying a request signature (default `'x-keyledger-signature'`). */
  signatureHeader?: string;
  /** Where a signed request's raw body is (default: `req.rawBody`, a Buffer/string `req.body`, or the unread stream). */
  rawBody?: (req: any) => Buffer | Uint8Array | string;
  /** The most body bytes the gate reads itself (default 1 MiB; more is 413). */
  limit?: number;
}

/** A body-parser `verify` hook keeping the raw bytes in `req.rawBody`: `express.json({ verify: captureRawBody })`. */
export function captureRawBody(req: any, res: any, buf: Buffer): void;

/** Express middleware: sets `req.keyledger` to the grant, or answers the refusal. */
export function keyledgerMiddleware(
  vault: Vault,
  options?: KeyledgerMiddlewareOptions,
): (req: any, res: any, next: (err?: unknown) => void) => void;

declare global {
  namespace Express {
    interface Request {
      keyledger?: Grant;
      rawBody?: Buffer;
    }
  }
}
