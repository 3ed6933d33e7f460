/**
 * Ctrl-C (SIGINT), SIGTERM and SIGHUP during a batch. The first one stops the
 * batch at the next safe point: running generations are aborted, a file being
 * written is finished, nothing new starts, and the command exits with
 * 128 + the signal's number (130, 143, 129) once its outputs are whole. A second
 * one ends the process at once by the signal itself (the shell's status is the
 * same), removing the temp files of writes still in progress, so what is left in
 * the output folder is whole either way and `--resume` finishes it.
 */
import { constants } from 'node:os';
import { removePendingTemps } from './output.js';

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
type Stop = (typeof SIGNALS)[number];

export class Interrupt {
  readonly #controller = new AbortController();
  readonly #handlers = new Map<Stop, () => void>();
  #received: Stop | undefined;

  /** `log` prints one line to the user (stderr). */
  constructor(private readonly log: (line: string) => void = (l) => process.stderr.write(l + '\n')) {}

  /** Aborted by the first signal; its reason is an Error naming the signal. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** The signal that stopped the run, if one did. */
  get received(): Stop | undefined {
    return this.#received;
  }

  /** The exit status for the signal received: 128 + its number (SIGINT 130, SIGTERM 143). */
  get exitCode(): number | undefined {
    return this.#received === undefined ? undefined : 128 + constants.signals[this.#received];
  }

  install(): this {
    for (const sig of SIGNALS) {
      const h = (): void => this.#onSignal(sig);
      this.#handlers.set(sig, h);
      process.on(sig, h);
    }
    return this;
  }

  /** Back to Node's default handling (the process dies on the signal). */
  uninstall(): void {
    for (const [sig, h] of this.#handlers) process.off(sig, h);
    this.#handlers.clear();
  }

  #onSignal(sig: Stop): void {
    if (this.#received === undefined) {
      this.#received = sig;
      this.log(`${sig}: stopping; what is written so far is kept (${sig === 'SIGINT' ? 'Ctrl-C' : sig} again stops at once)`);
      this.#controller.abort(new Error(`interrupted by ${sig}`));
      return;
    }
    // The second signal: no waiting for the engine; only whole files stay behind.
    removePendingTemps();
    this.log(`${sig}: stopped at once`);
    dieBy(sig);
  }

  /**
   * After the batch stopped: if something still holds the process open once the
   * models are closed (a read that never returns, e.g. a pipe with no writer),
   * it dies by the signal after `ms` instead of hanging.
   */
  exitSoon(ms = 5000): void {
    const sig = this.#received;
    if (sig !== undefined) setTimeout(() => dieBy(sig), ms).unref();
  }
}

/**
 * Ends the process by `sig` itself, with its default action: at once, whatever
 * the engine or a file read is doing (process.exit would wait for every libuv
 * worker thread, and one blocked in a read never returns); the shell reports
 * 128 + the signal's number.
 */
function dieBy(sig: Stop): void {
  process.removeAllListeners(sig);
  process.kill(process.pid, sig);
}
