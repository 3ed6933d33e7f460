/**
 * Admission to the model: at most `parallel` requests run, at most `maxWaiting`
 * wait; past that a request is refused at once with 429 and a Retry-After
 * estimated from recent service times. A waiting request whose signal fires
 * (client gone, deadline) leaves the queue without ever running.
 */
import { HttpError } from './errors.js';

interface Waiter {
  start: () => void;
  fail: (err: unknown) => void;
}

export class AdmissionQueue {
  #active = 0;
  readonly #waiting: Waiter[] = [];
  /** Mean service time in ms, an exponential moving average (starts at 1 s). */
  #serviceMs = 1000;

  constructor(
    readonly parallel: number,
    readonly maxWaiting: number,
  ) {}

  /** Requests running now. */
  get active(): number {
    return this.#active;
  }

  /** Requests waiting for a slot. */
  get depth(): number {
    return this.#waiting.length;
  }

  /** Seconds until a slot is likely free for a newcomer (at least 1). */
  retryAfter(): number {
    const ahead = this.#waiting.length + 1;
    return Math.max(1, Math.ceil((this.#serviceMs * ahead) / this.parallel / 1000));
  }

  /**
   * Takes a place in line, or throws 429 now when the line is full (so a
   * streaming reply can still send a proper status). The returned promise
   * resolves when `run` may start; call `done()` after it.
   */
  enter(signal?: AbortSignal): Promise<{ done: () => void }> {
    if (this.#active >= this.parallel && this.#waiting.length >= this.maxWaiting) {
      const after = this.retryAfter();
      throw new HttpError(429, `The server is busy (${this.#active} running, ${this.#waiting.length} waiting); retry in ${after} s`, 'rate_limit_error', 'queue_full', null, after);
    }
    const ticket = (): { done: () => void } => {
      const t0 = performance.now();
      let released = false;
      return {
        done: () => {
          if (released) return;
          released = true;
          this.#serviceMs = 0.8 * this.#serviceMs + 0.2 * (performance.now() - t0);
          this.#active--;
          this.#next();
        },
      };
    };
    if (this.#active < this.parallel) {
      this.#active++;
      return Promise.resolve(ticket());
    }
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        start: () => {
          signal?.removeEventListener('abort', onAbort);
          this.#active++;
          resolve(ticket());
        },
        fail: reject,
      };
      const onAbort = (): void => {
        const i = this.#waiting.indexOf(w);
        if (i >= 0) this.#waiting.splice(i, 1);
        reject(signal!.reason);
      };
      if (signal?.aborted) return reject(signal.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(w);
    });
  }

  /** Runs `fn` in a slot. */
  async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const t = await this.enter(signal);
    try {
      return await fn();
    } finally {
      t.done();
    }
  }

  #next(): void {
    while (this.#active < this.parallel && this.#waiting.length > 0) this.#waiting.shift()!.start();
  }

  /** Refuses everyone still waiting (shutdown). */
  drain(reason: unknown): void {
    for (const w of this.#waiting.splice(0)) w.fail(reason);
  }
}
