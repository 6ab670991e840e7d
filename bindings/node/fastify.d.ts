// Type definitions of keyledger/fastify.
import type { Vault, Amount, Grant } from './index.js';


declare module 'fastify' {
  interface FastifyRequest {
    /** The grant of the request, set by keyledger's `onRequest` (or `preParsing`) hook. */
    keyledger: Grant | null;
  }
}

/** The Fastify plugin (not encapsulated: it gates the scope that registers it). */
declare function keyledgerFastify(fastify: any, options: keyledgerFastify.KeyledgerFastifyOptions): Promise<void>;
declare namespace keyledgerFastify {
  export interface KeyledgerFastifyOptions {
    /** The open vault that decides. */
    vault: Vault;
    /** The header carrying `Bearer <token>` (default `authorization`; then `X-Api-Key` too). */
    header?: string;
    /** Credits to charge instead of the matched rule's cost. */
    cost?: Amount | ((request: any) => Amount | undefined);
    /** Rate limits to apply besides the auto-applied ones. */
    limits?: string[] | ((request: any) => string[] | undefined);
    /** The request's weight against every applied rate limit (default 1). */
    limitCost?: Amount | ((request: any) => Amount | undefined);
    /** Also put `scopes` and `ratelimits` in the grant. */
    full?: boolean;
    /** A request header whose value is the idempotency key. */
    idempotencyHeader?: string;
    /** A repeated idempotency key: 409 (`refuse`, default) or the replayed grant (`pass`). */
    replay?: 'refuse' | 'pass';
    /** The request signature header (default `x-keyledger-signature`). */
    signatureHeader?: string;
    /** The most body bytes a signed request may carry (default 1 MiB). */
    limit?: number;
    /** Match rules ignoring ASCII case (default: as the router, Fastify's `caseSensitive`). */
    caseInsensitive?: boolean;
  }
  export { keyledgerFastify as default, keyledgerFastify };
}
export = keyledgerFastify;
