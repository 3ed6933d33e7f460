// Starts `cxr-llava serve` as a real child process on 127.0.0.1 and a free
// port, as a user would, and waits for the line that names its address.

import { spawn, type ChildProcess } from 'node:child_process';
import { CLI, ROOT } from './cli.js';

export interface RunningServer {
  /** http://127.0.0.1:<port> (no trailing slash). */
  url: string;
  child: ChildProcess;
  /** Everything the server wrote to stderr so far (its request log included). */
  stderr(): string;
  /** Sends `signal` (default SIGTERM) and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Resolves when the process has exited, with its code. */
  exited: Promise<number | null>;
}

/** `node dist/bin/cxr-llava.js serve --port 0 ...args`; rejects if it exits or says nothing within `timeoutMs`. */
export function startServer(args: readonly string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunningServer> {
  const child = spawn(process.execPath, [CLI, 'serve', '--host', '127.0.0.1', '--port', '0', ...args], {
    cwd: ROOT,
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stdout!.resume();
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the server did not start within ${opts.timeoutMs ?? 60_000} ms:\n${err}`));
    }, opts.timeoutMs ?? 60_000);
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      const m = /cxr-llava serve: \S+ on (http:\/\/127\.0\.0\.1:\d+)\//.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve({
          url: m[1]!,
          child,
          stderr: () => err,
          exited,
          stop: (signal = 'SIGTERM') => {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal);
            return exited;
          },
        });
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited with ${code} before listening:\n${err}`));
    });
  });
}
