// Runs the built CLI (dist/bin/cxr-llava.js) as a real child process, through a
// pipe or inside a pseudo-terminal, and builds the tiny model and image folders
// the CLI tests use.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { writeTinyLlama } from './tiny-llama.js';
import { writeTinyMmproj } from './tiny-vision.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = path.join(ROOT, 'dist/bin/cxr-llava.js');

if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npx tsc -p tsconfig.json\` first`);

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Written to the child's stdin, then closed (default: stdin closed at once). */
  stdin?: string;
  cwd?: string;
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
}

/** An environment without a cached model or a model from the caller's shell. */
export function cleanEnv(home: string, extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return { ...process.env, CXR_LLAVA_MODEL: undefined, CXR_LLAVA_HOME: path.join(home, 'cache'), HF_TOKEN: undefined, ...extra };
}

/** A CLI child still running: signal it, read its output so far, await its end. */
export interface RunningCli {
  child: ChildProcess;
  /** Everything it wrote to stderr so far. */
  stderr(): string;
  done: Promise<CliResult & { signal: NodeJS.Signals | null }>;
}

export interface StartOptions extends CliOptions {
  /** Node's own arguments before the script, e.g. `['--require', FS_FAULTS]`. */
  nodeArgs?: readonly string[];
  /** Send stdout into this file instead of a pipe (the result's stdout is then empty). */
  stdoutFile?: string;
  /** Run as this user and group (the test runs as root and needs the checks root skips). */
  uid?: number;
  gid?: number;
}

/**
 * Starts `node [nodeArgs] dist/bin/cxr-llava.js ...args` with pipes for stdin,
 * stdout and stderr (`nodeArgs`: e.g. `--require` of a test/helpers preload).
 */
export function startCli(args: readonly string[], opts: StartOptions = {}): RunningCli {
  // stdout into a file, as `> out.jsonl` does: the file is opened (truncated) here and handed over.
  const outFd = opts.stdoutFile !== undefined ? openSync(opts.stdoutFile, 'w') : undefined;
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), CLI, ...args], {
    cwd: opts.cwd ?? ROOT,
    env: (opts.env ?? process.env) as NodeJS.ProcessEnv,
    stdio: ['pipe', outFd ?? 'pipe', 'pipe'],
    ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
    ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
  });
  if (outFd !== undefined) closeSync(outFd);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const done = new Promise<CliResult & { signal: NodeJS.Signals | null }>((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  child.stdin!.end(opts.stdin ?? '');
  return { child, stderr: () => stderr, done };
}

/** `node dist/bin/cxr-llava.js ...args` with pipes for stdin, stdout and stderr. */
export async function runCli(args: readonly string[], opts: StartOptions = {}): Promise<CliResult> {
  const { code, stdout, stderr } = await startCli(args, opts).done;
  return { code, stdout, stderr };
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** One scripted exchange with a pseudo-terminal: when `expect` has appeared (after the previous step's match), type `send`. */
export interface PtyStep {
  expect: RegExp;
  send: string;
}

/**
 * Runs the CLI inside a pseudo-terminal (util-linux `script`), so stdout and
 * stderr are both a TTY, as in an interactive shell. Returns everything the
 * terminal received, escape sequences included, and the CLI's exit status.
 * `steps` type into the terminal in answer to what it shows.
 */
export function runInPty(args: readonly string[], opts: CliOptions & { steps?: PtyStep[]; columns?: number } = {}): Promise<CliResult> {
  const cmd = `stty cols ${opts.columns ?? 100} rows 40 2>/dev/null; exec ${shellQuote(process.execPath)} ${[CLI, ...args].map(shellQuote).join(' ')}`;
  return new Promise((resolve, reject) => {
    // -e: script exits with the child's status; -f: flush as output arrives.
    const child = spawn('script', ['-qefc', cmd, '/dev/null'], {
      cwd: opts.cwd ?? ROOT,
      env: (opts.env ?? process.env) as NodeJS.ProcessEnv,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const steps = [...(opts.steps ?? [])];
    let stdout = '';
    let stderr = '';
    let from = 0;
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      while (steps.length > 0) {
        const m = steps[0]!.expect.exec(stdout.slice(from));
        if (!m) break;
        from += m.index + m[0].length;
        child.stdin.write(steps.shift()!.send);
      }
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    // stdin stays open: script ends the session when its input closes.
  });
}

/** Terminal output with the progress bar's draws and erasures removed, and CRLF as LF. */
export function withoutBar(s: string): string {
  return s.replace(/\r[^\r\n]*?\x1b\[K/g, '').replace(/\r\n/g, '\n');
}

/** The tiny text model and mmproj in `dir`, named as `pull` names them so `--model <dir>` finds both. */
export async function writeTinyCxrModel(dir: string): Promise<{ model: string; mmproj: string }> {
  await mkdir(dir, { recursive: true });
  const model = path.join(dir, 'cxr-llava-v2.f32.gguf');
  const mmproj = path.join(dir, 'mmproj-cxr-llava-v2.f32.gguf');
  await writeTinyLlama(model, 'f32');
  await writeTinyMmproj(mmproj, 'f32');
  return { model, mmproj };
}

/** A w x h grey gradient as PNG (or JPEG/WebP/TIFF) bytes, different per `seed`. */
export async function imageBytes(w: number, h: number, seed: number, format: 'png' | 'jpeg' | 'webp' | 'tiff' = 'png'): Promise<Buffer> {
  const px = Buffer.alloc(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) px[y * w + x] = (x * 3 + y * 5 + seed * 37) & 0xff;
  return sharp(px, { raw: { width: w, height: h, channels: 1 } }).toFormat(format).toBuffer();
}

/**
 * A folder with five readable images (four formats, several sizes) and three
 * bad files: text named .png, a truncated PNG, and an empty file.
 */
export async function writeImageFolder(dir: string): Promise<{ good: string[]; bad: string[] }> {
  await mkdir(dir, { recursive: true });
  const good: [string, Buffer][] = [
    ['a.png', await imageBytes(64, 64, 1)],
    ['b.jpg', await imageBytes(80, 100, 2, 'jpeg')],
    ['c.webp', await imageBytes(100, 70, 3, 'webp')],
    ['d.tif', await imageBytes(64, 96, 4, 'tiff')],
    ['e.png', await imageBytes(128, 128, 5)],
  ];
  const png = await imageBytes(64, 64, 6);
  const bad: [string, Buffer][] = [
    ['notes.png', Buffer.from('this is not an image\n')],
    ['truncated.png', png.subarray(0, Math.floor(png.length / 2))],
    ['zero.png', Buffer.alloc(0)],
  ];
  for (const [name, data] of [...good, ...bad]) await writeFile(path.join(dir, name), data);
  return { good: good.map(([n]) => path.join(dir, n)), bad: bad.map(([n]) => path.join(dir, n)) };
}

/** The preload that makes the CLI's file system fail or slow down (see its header); pass as `nodeArgs: ['--require', FS_FAULTS]`. */
export const FS_FAULTS = path.join(ROOT, 'test/helpers/fs-faults.cjs');

/** The preload that samples the CLI's memory after a full GC (see its header); pass as `nodeArgs: ['--expose-gc', '--require', MEM_SAMPLER]`. */
export const MEM_SAMPLER = path.join(ROOT, 'test/helpers/mem-sampler.cjs');

/** `n` small PNGs x000.png ... in `dir`, each a different image. */
export async function writeManyImages(dir: string, n: number, size = 32): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  for (let i = 0; i < n; i++) {
    const f = path.join(dir, `x${String(i).padStart(String(n - 1).length, '0')}.png`);
    await writeFile(f, await imageBytes(size, size, i));
    files.push(f);
  }
  return files;
}
