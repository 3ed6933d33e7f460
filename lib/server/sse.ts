/**
 * Server-sent events on a fastify reply: the headers go out with the first
 * write, through fastify (so CORS and logging hooks still apply), and each
 * event is one `data:` line (plus `event:` when named).
 */
import { PassThrough } from 'node:stream';
import type { FastifyReply } from 'fastify';

export class EventStream {
  readonly #out = new PassThrough();
  #ended = false;

  constructor(reply: FastifyReply) {
    reply.header('content-type', 'text/event-stream; charset=utf-8').header('cache-control', 'no-cache').header('x-accel-buffering', 'no');
    void reply.send(this.#out);
  }

  /** One event; `data` is JSON-encoded unless it is a string. */
  send(data: unknown, event?: string): void {
    if (this.#ended) return;
    const body = typeof data === 'string' ? data : JSON.stringify(data);
    this.#out.write((event ? `event: ${event}\n` : '') + `data: ${body}\n\n`);
  }

  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#out.end();
  }
}
