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
}

/** Express middleware: sets `req.keyledger` to the grant, or answers the refusal. */
export function keyledgerMiddleware(
  vault: Vault,
  options?: KeyledgerMiddlewareOptions,
): (req: any, res: any, next: (err?: unknown) => void) => void;

declare global {
  namespace Express {
    interface Request {
      keyledger?: Grant;
    }
  }
}
