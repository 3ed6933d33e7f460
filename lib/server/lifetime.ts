/**
 * How long a request may live: one AbortSignal per request that fires when the
 * client disconnects, when the per-request deadline passes, or when the server
 * shuts down. Generation checks it between tokens, so an abandoned request
 * stops within one step and frees its slot.
 */
import type { FastifyReply } from 'fastify';
import { HttpError } from './errors.js';

export class Lifetimes {
  readonly #live = new Set<AbortController>();

  constructor(readonly deadlineMs: number) {}

  /** Requests alive now. */
  get size(): number {
    return this.#live.size;
  }

  /** The signal of one request; `end()` when the reply is done. */
  begin(reply: FastifyReply): { signal: AbortSignal; end: () => void } {
    const ac = new AbortController();
    this.#live.add(ac);
    const timer = setTimeout(() => {
      ac.abort(new HttpError(504, `The request ran past the server's deadline of ${this.deadlineMs / 1000} s (see --timeout)`, 'timeout_error', 'deadline_exceeded'));
    }, this.deadlineMs);
    timer.unref();
    // 'close' on the response before it finished writing means the client went away.
    const onClose = (): void => {
      if (!reply.raw.writableFinished) ac.abort(new HttpError(499, 'The client closed the connection', 'invalid_request_error', 'client_closed'));
    };
    reply.raw.on('close', onClose);
    return {
      signal: ac.signal,
      end: () => {
        clearTimeout(timer);
        reply.raw.off('close', onClose);
        this.#live.delete(ac);
      },
    };
  }

  /** Aborts every live request (shutdown past its grace period). */
  abortAll(): void {
    for (const ac of this.#live) ac.abort(new HttpError(503, 'The server is shutting down', 'server_error', 'shutting_down'));
  }
}
