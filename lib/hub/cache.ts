// cache.ts - where pulled models live, which one is the default, and the lock that
// keeps two pulls from writing the same cache at once.
//
// Layout under the cache root:
//   models/<owner>/<name>/<type>/cxr-llava-v2.<type>.gguf, mmproj-cxr-llava-v2.<type>.gguf,
//                                manifest.json  (written last: a folder without it is incomplete)
//   raw/<owner>/<name>/<commit>/<file>[.part]    downloads, removed after conversion unless kept
//   locks/<owner>__<name>.lock                   {"pid", "host", "started"} while a pull runs

import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { link, mkdir, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { homedir, hostname } from 'node:os';
import path from 'node:path';
import { CxrError, invalidParameterError } from '../errors.js';

/** The default model repository. */
export const DEFAULT_REPO = 'ECOFRI/CXR-LLAVA-v2';

/** The cache root: $CXR_LLAVA_HOME, else $XDG_CACHE_HOME/cxr-llava, else ~/.cache/cxr-llava. */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.CXR_LLAVA_HOME) return path.resolve(env.CXR_LLAVA_HOME);
  if (env.XDG_CACHE_HOME) return path.resolve(env.XDG_CACHE_HOME, 'cxr-llava');
  return path.join(homedir(), '.cache', 'cxr-llava');
}

/** Checks an "owner/name" repository id; it becomes two path components, so nothing else is allowed. */
export function checkRepo(repo: unknown): string {
  if (typeof repo !== 'string' || !/^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/.test(repo) || repo.includes('..')) {
    throw invalidParameterError('repo', 'Hugging Face repository id "owner/name"', repo);
  }
  return repo;
}

export function modelDir(root: string, repo: string, type: string): string {
  return path.join(root, 'models', ...checkRepo(repo).split('/'), type);
}

export function rawDir(root: string, repo: string, commit: string): string {
  return path.join(root, 'raw', ...checkRepo(repo).split('/'), commit);
}

/** What manifest.json records about one pulled model. */
export interface Manifest {
  repo: string;
  /** The revision asked for, e.g. "main". */
  revision: string;
  /** The commit it resolved to. */
  commit: string;
  type: string;
  visionType: string;
  /** File names inside the model folder. */
  textFile: string;
  mmprojFile: string;
  /** ISO time of the pull. */
  pulledAt: string;
  converterVersion: string;
}

/** A model in the cache. */
export interface CachedModel extends Manifest {
  dir: string;
  textPath: string;
  mmprojPath: string;
}

/** Writes manifest.json atomically (temp + rename): it marks the folder complete. */
export async function writeManifest(dir: string, m: Manifest): Promise<void> {
  const tmp = path.join(dir, `.manifest-${process.pid}-${randomBytes(4).toString('hex')}.json`);
  await writeFile(tmp, JSON.stringify(m, null, 2) + '\n');
  await rename(tmp, path.join(dir, 'manifest.json'));
}

async function readManifest(dir: string): Promise<CachedModel | undefined> {
  let m: Manifest;
  try {
    m = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')) as Manifest;
  } catch {
    return undefined; // missing or damaged: not a usable model
  }
  if (typeof m.textFile !== 'string' || typeof m.mmprojFile !== 'string' || typeof m.pulledAt !== 'string') return undefined;
  const textPath = path.join(dir, path.basename(m.textFile));
  const mmprojPath = path.join(dir, path.basename(m.mmprojFile));
  if (!existsSync(textPath) || !existsSync(mmprojPath)) return undefined;
  return { ...m, dir, textPath, mmprojPath };
}

/** Every complete model of `repo` in the cache, most recently pulled first. */
export async function listCachedModels(options: { repo?: string; cacheDir?: string } = {}): Promise<CachedModel[]> {
  const repo = checkRepo(options.repo ?? DEFAULT_REPO);
  const base = path.join(options.cacheDir ?? cacheRoot(), 'models', ...repo.split('/'));
  const types = await readdir(base).catch(() => [] as string[]);
  const found: CachedModel[] = [];
  for (const t of types) {
    const m = await readManifest(path.join(base, t));
    if (m) found.push(m);
  }
  return found.sort((a, b) => b.pulledAt.localeCompare(a.pulledAt));
}

/** The complete cached model of `repo` and `type`, if there is one. */
export async function cachedModel(repo: string, type: string, cacheDir: string): Promise<CachedModel | undefined> {
  return readManifest(modelDir(cacheDir, repo, type));
}

/**
 * The model to use when none is named: the most recently pulled one, or the one of
 * `type`. Throws ERR_IO with a hint to run `cxr-llava pull` when nothing fits.
 */
export async function resolveDefaultModel(
  options: { type?: string; repo?: string; cacheDir?: string } = {},
): Promise<CachedModel> {
  const root = options.cacheDir ?? cacheRoot();
  const all = await listCachedModels({ repo: options.repo ?? DEFAULT_REPO, cacheDir: root });
  const pick = options.type === undefined ? all[0] : all.find((m) => m.type === options.type);
  if (pick) return pick;
  const repo = options.repo ?? DEFAULT_REPO;
  const have = all.length ? ` (cached: ${all.map((m) => m.type).join(', ')})` : '';
  const typeArg = options.type ? ` --type ${options.type}` : '';
  throw new CxrError(
    'ERR_IO',
    `No ${options.type ? options.type + ' ' : ''}model of ${repo} in the cache at ${root}${have}. ` +
      `Run \`cxr-llava pull${typeArg}\` to download and convert it, or pass a GGUF path.`,
  );
}

// ---- the pull lock -----------------------------------------------------------------------

interface LockInfo {
  pid: number;
  host: string;
  started: string;
}

/** Whether the process holding a lock is gone (only decidable on this host). */
function isStale(info: LockInfo | undefined): boolean {
  if (!info) return false;
  if (info.host !== hostname()) return false;
  try {
    process.kill(info.pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

async function readLock(file: string): Promise<{ info?: LockInfo; text: string; mtimeMs: number } | undefined> {
  try {
    const [text, st] = await Promise.all([readFile(file, 'utf8'), stat(file)]);
    let info: LockInfo | undefined;
    try {
      const j = JSON.parse(text) as LockInfo;
      if (Number.isInteger(j.pid) && typeof j.host === 'string') info = j;
    } catch {
      // written but not yet filled, or damaged: judged by age below
    }
    return { info, text, mtimeMs: st.mtimeMs };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export interface LockOptions {
  /** How often to look at a held lock (optional, default 1000 ms). */
  pollMs?: number;
  /** Give up after this long (optional, default: wait as long as the holder lives). */
  timeoutMs?: number;
  /** Called once when the lock is held by someone else, with the holder. */
  onWait?: (holder: { pid?: number; host?: string; started?: string }) => void;
}

/**
 * Takes `file` as an exclusive lock (created with O_EXCL, holding our pid and host) and
 * returns its release function. A lock left by a process that no longer exists on this
 * host, or an empty lock older than a minute, is removed and taken over.
 */
export async function acquireLock(file: string, options: LockOptions = {}): Promise<() => Promise<void>> {
  const pollMs = options.pollMs ?? 1000;
  const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
  await mkdir(path.dirname(file), { recursive: true });
  const mine: LockInfo = { pid: process.pid, host: hostname(), started: new Date().toISOString() };
  let told = false;
  for (;;) {
    // The lock appears with its content in one step (write a temp file, then
    // link it into place, which fails if the lock exists), so a waiting pull
    // never reads a half-written lock.
    const text = JSON.stringify(mine);
    const tmp = `${file}.${process.pid}-${randomBytes(4).toString('hex')}`;
    await writeFile(tmp, text);
    try {
      await link(tmp, file);
      return async () => {
        // Only remove the lock if it is still ours.
        const cur = await readLock(file).catch(() => undefined);
        if (cur?.text === text) await unlink(file).catch(() => {});
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      await unlink(tmp).catch(() => {});
    }
    const held = await readLock(file);
    if (!held) continue; // released between our open and read
    const abandonedEmpty = !held.info && Date.now() - held.mtimeMs > 60_000;
    if (isStale(held.info) || abandonedEmpty) {
      // Re-read just before removing, so a lock taken over meanwhile is left alone.
      const again = await readLock(file);
      if (again?.text === held.text) await unlink(file).catch(() => {});
      continue;
    }
    if (!told) {
      told = true;
      options.onWait?.({ ...(held.info ?? {}) });
    }
    if (Date.now() + pollMs > deadline) {
      throw new CxrError(
        'ERR_BUSY',
        `${file}: another pull (pid ${held.info?.pid ?? '?'} on ${held.info?.host ?? '?'}) holds the cache lock; gave up waiting`,
      );
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
