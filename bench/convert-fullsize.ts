/**
 * Time and peak memory of converting a full-size CXR-LLaVA checkpoint (LLaMA-2-7B +
 * ViT-L/16 at 512 px, bf16, ~14 GB) to GGUF. The checkpoint is random-weight, generated
 * in the official layout (bench/fullsize-checkpoint.ts) and reused from --dir.
 *
 *   npm run bench:convert -- --types q8_0,q4_k_m --keep
 *
 * Each conversion runs in a child process of its own, so its peak RSS is its own, under
 * `flock /tmp/cxr-bench.lock` so it never overlaps another benchmark on a shared machine
 * (generating the checkpoint is plain disk writing and takes no lock). Each output is then
 * checked in a second child: readGgufInfo on both files and two greedy tokens.
 *
 * Prints a table on stdout, then one JSON line with every number. Progress goes to stderr.
 * The checkpoint and the outputs are deleted at the end unless --keep.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statfsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, rmdir } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  CHECKPOINT_FILES,
  checkpointTensorBytes,
  FULL_SHAPE,
  isCompleteCheckpoint,
  writeFullsizeCheckpoint,
  type FullsizeShape,
} from './fullsize-checkpoint.js';

const TYPES = ['q8_0', 'q4_k_m', 'q4_0', 'f16'] as const;
type Type = (typeof TYPES)[number];
const LOCK = '/tmp/cxr-bench.lock';
const TIME = '/usr/bin/time';
const GB = 1e9;

const USAGE = `Usage: npm run bench:convert -- [options]
  --types LIST     text types to convert, comma-separated: ${TYPES.join(', ')} (default q8_0,q4_k_m)
  --dir PATH       checkpoint and output folder, reused between runs (default ${path.join(tmpdir(), 'cxr-llava-convert-bench')})
  --keep           keep the checkpoint and the GGUF files
  --no-run         skip the two-token generation check (readGgufInfo still runs)
  --smoke          2 LLaMA and 2 ViT layers (full widths and vocabulary): a quick check of the script`;

interface Options {
  types: Type[];
  dir: string;
  keep: boolean;
  run: boolean;
  smoke: boolean;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      types: { type: 'string' },
      dir: { type: 'string' },
      keep: { type: 'boolean' },
      'no-run': { type: 'boolean' },
      smoke: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const types = (values.types ?? 'q8_0,q4_k_m').split(',').map((t) => t.trim());
  for (const t of types) {
    if (!(TYPES as readonly string[]).includes(t)) throw new Error(`Expected one of ${TYPES.join(', ')} in --types but received ${t}`);
  }
  return {
    types: types as Type[],
    dir: path.resolve(values.dir ?? path.join(tmpdir(), 'cxr-llava-convert-bench')),
    keep: values.keep ?? false,
    run: !(values['no-run'] ?? false),
    smoke: values.smoke ?? false,
  };
}

// ---- children ----------------------------------------------------------------------------

// A child prints its result as the last stdout line, after this prefix.
const RESULT = 'CXR-BENCH-RESULT ';

/** Seconds from the start of the conversion to the start of each phase, and its end. */
interface ConvertChildResult {
  seconds: number;
  phases: Record<string, number>;
  textPath: string;
  mmprojPath: string;
  textBytes: number;
  mmprojBytes: number;
  /** getrusage's peak RSS in bytes, as the child itself sees it. */
  maxRssBytes: number;
}

async function convertChild(hfDir: string, outDir: string, type: Type): Promise<void> {
  const { convertCheckpoint } = await import('../lib/convert/convert.js');
  const t0 = performance.now();
  const phases: Record<string, number> = {};
  let lastPrint = 0;
  const r = await convertCheckpoint(hfDir, {
    outDir,
    type,
    onProgress: (p) => {
      const now = performance.now();
      phases[p.phase] ??= (now - t0) / 1000;
      if (now - lastPrint > 10_000 || p.progress === 1) {
        lastPrint = now;
        process.stderr.write(`  ${type} ${p.phase} ${(p.progress * 100).toFixed(1)}% ${p.item ?? ''}\n`);
      }
    },
  });
  phases.end = (performance.now() - t0) / 1000;
  const result: ConvertChildResult = {
    seconds: r.seconds,
    phases,
    textPath: r.textPath,
    mmprojPath: r.mmprojPath,
    textBytes: r.textBytes,
    mmprojBytes: r.mmprojBytes,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
  };
  process.stdout.write(RESULT + JSON.stringify(result) + '\n');
}

interface CheckChildResult {
  /** Tensor count per ggml type, per file. */
  textTypes: Record<string, number>;
  mmprojTypes: Record<string, number>;
  textTensors: number;
  mmprojTensors: number;
  fileType: unknown;
  /** Present unless --no-run. */
  generate?: { loadSeconds: number; generateSeconds: number; tokens: number[]; vocabSize: number };
  /** getrusage's peak RSS in bytes (mmapped weights count as they are touched). */
  maxRssBytes?: number;
}

function typeCounts(tensors: { type: string }[]): Record<string, number> {
  const c: Record<string, number> = {};
  for (const t of tensors) c[t.type] = (c[t.type] ?? 0) + 1;
  return c;
}

async function checkChild(textPath: string, mmprojPath: string, run: boolean): Promise<void> {
  const { readGgufInfo } = await import('../lib/runtime/tensors.js');
  const text = readGgufInfo(textPath);
  const mmproj = readGgufInfo(mmprojPath);
  const result: CheckChildResult = {
    textTypes: typeCounts(text.tensors),
    mmprojTypes: typeCounts(mmproj.tensors),
    textTensors: text.tensors.length,
    mmprojTensors: mmproj.tensors.length,
    fileType: text.metadata['general.file_type'],
  };
  if (run) {
    const { loadModel } = await import('../lib/runtime/model.js');
    const t0 = performance.now();
    const model = await loadModel({ model: textPath, mmproj: mmprojPath, contextSize: 64 });
    const t1 = performance.now();
    try {
      // Random weights: the tokens mean nothing; that they come out proves the file runs.
      const r = await model.generate({ tokens: [1, 2, 3], maxTokens: 2, temperature: 0, ignoreEos: true });
      const vocabSize = model.info.hparams.vocabSize;
      if (r.tokens.length !== 2 || r.tokens.some((t) => !Number.isInteger(t) || t < 0 || t >= vocabSize)) {
        throw new Error(`${textPath}: expected 2 token ids below ${vocabSize}, got [${r.tokens.join(', ')}]`);
      }
      result.generate = {
        loadSeconds: (t1 - t0) / 1000,
        generateSeconds: (performance.now() - t1) / 1000,
        tokens: r.tokens,
        vocabSize,
      };
    } finally {
      await model.close();
    }
  }
  result.maxRssBytes = process.resourceUsage().maxRSS * 1024;
  process.stdout.write(RESULT + JSON.stringify(result) + '\n');
}

interface ChildRun<T> {
  result: T;
  /** Wall time of the child itself (/usr/bin/time), without the wait for the lock. */
  wallSeconds: number;
  /** Seconds spent waiting for the lock. */
  lockWaitSeconds: number;
  /** Peak RSS in bytes: /usr/bin/time's "Maximum resident set size", else the child's own getrusage. */
  maxRssBytes: number;
  userSeconds?: number;
  systemSeconds?: number;
}

/** Runs this script in `args` child mode under the lock (and /usr/bin/time -v when present). */
async function runChild<T extends { maxRssBytes?: number }>(args: string[], label: string): Promise<ChildRun<T>> {
  const self = fileURLToPath(import.meta.url);
  const timeDir = await mkdtemp(path.join(tmpdir(), 'cxr-convert-time-'));
  const timeFile = path.join(timeDir, 'time.txt');
  const useTime = existsSync(TIME);
  // time(1) inside flock, so the wait for the lock is not timed.
  const inner = [...(useTime ? [TIME, '-v', '-o', timeFile] : []), process.execPath, self, ...args];
  const hasFlock = existsSync('/usr/bin/flock');
  if (!hasFlock) process.stderr.write(`warning: /usr/bin/flock not found; ${label} runs without the benchmark lock\n`);
  const cmd = hasFlock ? ['/usr/bin/flock', LOCK, ...inner] : inner;
  const t0 = Date.now();
  process.stderr.write(`${label}: waiting for ${LOCK}\n`);
  const stdout = await new Promise<string>((resolve, reject) => {
    const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (s: string) => (out += s));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve(out);
      else reject(new Error(`${label}: child exited with ${signal ?? `code ${code}`}${timeTail(timeFile)}`));
    });
  });
  const line = stdout.split('\n').find((l) => l.startsWith(RESULT));
  if (!line) throw new Error(`${label}: the child printed no result`);
  const result = JSON.parse(line.slice(RESULT.length)) as T;
  const run: ChildRun<T> = { result, wallSeconds: 0, lockWaitSeconds: 0, maxRssBytes: result.maxRssBytes ?? 0 };
  const total = (Date.now() - t0) / 1000;
  if (useTime) {
    const text = readFileSync(timeFile, 'utf8');
    const field = (name: string): string | undefined => text.match(new RegExp(`${name}: (.+)`))?.[1]?.trim();
    const rss = Number(field('Maximum resident set size \\(kbytes\\)'));
    if (Number.isFinite(rss) && rss > 0) run.maxRssBytes = rss * 1024;
    run.wallSeconds = parseClock(field('Elapsed \\(wall clock\\) time \\(h:mm:ss or m:ss\\)') ?? '');
    run.userSeconds = Number(field('User time \\(seconds\\)'));
    run.systemSeconds = Number(field('System time \\(seconds\\)'));
    run.lockWaitSeconds = Math.max(0, total - run.wallSeconds);
  } else {
    run.wallSeconds = total;
  }
  await rm(timeDir, { recursive: true, force: true });
  return run;
}

function timeTail(file: string): string {
  try {
    const t = readFileSync(file, 'utf8').trim().split('\n').slice(0, 2).join('; ');
    return t ? ` (${t})` : '';
  } catch {
    return '';
  }
}

/** "h:mm:ss" or "m:ss.ss" in seconds. */
function parseClock(s: string): number {
  return s.split(':').reduce((a, part) => a * 60 + Number(part), 0);
}

// ---- the benchmark -----------------------------------------------------------------------

const fmtGB = (b: number): string => (b / GB).toFixed(2);
const fmtS = (s: number): string => s.toFixed(1);

function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

async function removeCheckpoint(dir: string): Promise<void> {
  for (const f of CHECKPOINT_FILES) await rm(path.join(dir, f), { force: true });
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child-convert') return convertChild(argv[1]!, argv[2]!, argv[3] as Type);
  if (argv[0] === '--child-check') return checkChild(argv[1]!, argv[2]!, argv[3] === 'run');

  const o = parseOptions(argv);
  const shape: FullsizeShape = o.smoke ? { ...FULL_SHAPE, numLayers: 2, visionLayers: 2 } : FULL_SHAPE;
  const hfDir = path.join(o.dir, 'checkpoint');
  const ckptBytes = checkpointTensorBytes(shape);

  // Disk: the checkpoint, plus one conversion's outputs at a time (each is checked, then
  // deleted unless --keep); bf16 -> q8_0 is ~0.53x, the mmproj f16 ~0.04x of the checkpoint.
  const outputsNeed = o.keep ? o.types.length * 0.6 * ckptBytes : 0.6 * ckptBytes;
  const reuse = isCompleteCheckpoint(hfDir, shape);
  const need = (reuse ? 0 : ckptBytes) + outputsNeed;
  await mkdir(o.dir, { recursive: true });
  const free = freeBytes(o.dir);
  process.stderr.write(`disk: ${fmtGB(free)} GB free in ${o.dir}, about ${fmtGB(need)} GB needed\n`);
  if (free < need * 1.05) throw new Error(`${o.dir}: ${fmtGB(free)} GB free, about ${fmtGB(need)} GB needed`);

  let generateSeconds: number | null = null;
  const rows: {
    type: Type;
    convert: ChildRun<ConvertChildResult>;
    check: ChildRun<CheckChildResult>;
  }[] = [];
  try {
    if (reuse) {
      process.stderr.write(`reusing the checkpoint in ${hfDir}\n`);
    } else {
      process.stderr.write(`writing a ${fmtGB(ckptBytes)} GB checkpoint to ${hfDir}\n`);
      const t0 = performance.now();
      let lastPrint = 0;
      await writeFullsizeCheckpoint(hfDir, shape, (f, tensor) => {
        const now = performance.now();
        if (now - lastPrint > 10_000 || f === 1) {
          lastPrint = now;
          process.stderr.write(`  checkpoint ${(f * 100).toFixed(1)}% ${tensor}\n`);
        }
      });
      generateSeconds = (performance.now() - t0) / 1000;
      process.stderr.write(`checkpoint written in ${fmtS(generateSeconds)} s\n`);
    }
    for (const type of o.types) {
      const outDir = path.join(o.dir, `out-${type}`);
      await rm(outDir, { recursive: true, force: true });
      const convert = await runChild<ConvertChildResult>(['--child-convert', hfDir, outDir, type], `convert ${type}`);
      process.stderr.write(
        `convert ${type}: ${fmtS(convert.wallSeconds)} s, peak RSS ${fmtGB(convert.maxRssBytes)} GB, ` +
          `${fmtGB(convert.result.textBytes)} + ${fmtGB(convert.result.mmprojBytes)} GB\n`,
      );
      const check = await runChild<CheckChildResult>(
        ['--child-check', convert.result.textPath, convert.result.mmprojPath, o.run ? 'run' : 'info'],
        `check ${type}`,
      );
      process.stderr.write(`check ${type}: ${JSON.stringify(check.result)}\n`);
      rows.push({ type, convert, check });
      if (!o.keep) await rm(outDir, { recursive: true, force: true });
    }
  } finally {
    if (!o.keep) {
      for (const type of o.types) await rm(path.join(o.dir, `out-${type}`), { recursive: true, force: true });
      await removeCheckpoint(hfDir);
      for (const d of [hfDir, o.dir]) await rmdir(d).catch(() => {}); // only when empty
    }
  }

  const header = ['type', 'wall s', 'hash s', 'text s', 'vision s', 'user s', 'peak RSS GB', 'text GB', 'mmproj GB', 'text tensor types', 'tokens'];
  const table = rows.map(({ type, convert: c, check: k }) => {
    const p = c.result.phases;
    const span = (a: string, b: string): string => (p[a] !== undefined && p[b] !== undefined ? fmtS(p[b]! - p[a]!) : '-');
    return [
      type,
      fmtS(c.wallSeconds),
      span('hash', 'text'),
      span('text', 'vision'),
      span('vision', 'end'),
      c.userSeconds !== undefined ? fmtS(c.userSeconds) : '-',
      fmtGB(c.maxRssBytes),
      fmtGB(c.result.textBytes),
      fmtGB(c.result.mmprojBytes),
      Object.entries(k.result.textTypes).map(([t, n]) => `${t}:${n}`).join(' '),
      k.result.generate ? k.result.generate.tokens.join(',') : '-',
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log(`checkpoint: ${fmtGB(ckptBytes)} GB bf16${o.smoke ? ' (smoke: 2+2 layers)' : ''}; ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), ${fmtGB(totalmem())} GB RAM`);
  console.log(line(header));
  for (const r of table) console.log(line(r));
  console.log(
    JSON.stringify({
      bench: 'convert-fullsize',
      smoke: o.smoke,
      shape,
      checkpointBytes: ckptBytes,
      checkpointGenerateSeconds: generateSeconds,
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? null,
      totalMemBytes: totalmem(),
      node: process.version,
      runs: rows.map(({ type, convert: c, check: k }) => ({
        type,
        wallSeconds: c.wallSeconds,
        userSeconds: c.userSeconds ?? null,
        systemSeconds: c.systemSeconds ?? null,
        lockWaitSeconds: c.lockWaitSeconds,
        maxRssBytes: c.maxRssBytes,
        phases: c.result.phases,
        textBytes: c.result.textBytes,
        mmprojBytes: c.result.mmprojBytes,
        check: { ...k.result, wallSeconds: k.wallSeconds, maxRssBytes: k.maxRssBytes },
      })),
    }),
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
