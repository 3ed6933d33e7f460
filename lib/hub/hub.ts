// hub.ts - `pullModel`: download the official checkpoint from the Hugging Face Hub,
// verify it, convert it to GGUF and keep the result in the model cache (lib/hub/cache.ts).
//
// Hub routes used (the same ones huggingface_hub uses):
//   GET  {endpoint}/api/models/{repo}/revision/{rev}  -> { sha: <commit>, siblings: [{ rfilename }] }
//   HEAD {endpoint}/{repo}/resolve/{commit}/{file}    -> 200 for a file kept in git (ETag: the git
//        blob sha1), or a 302 to a CDN for an LFS file, whose response carries X-Linked-Size (bytes)
//        and X-Linked-Etag (the file's sha256); X-Repo-Commit names the commit.
//   GET  the same URL, following redirects, with Range: bytes=N- to resume.
// Authorization: Bearer <token> is sent to the endpoint's origin only, never to a CDN
// on another origin (its URL is pre-signed). 401/403 and 404 are final; network errors,
// 408/429 and 5xx are retried with exponential backoff, resuming from the .part file.

import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import {
  acquireLock,
  cachedModel,
  cacheRoot,
  checkRepo,
  DEFAULT_REPO,
  modelDir,
  rawDir,
  writeManifest,
  type CachedModel,
} from './cache.js';
import { convertCheckpoint, converterVersion, CONVERT_TYPES, VISION_TYPES, type ConvertProgress, type ConvertType, type VisionType } from '../convert/convert.js';
import { CxrError, invalidParameterError } from '../errors.js';

export { resolveDefaultModel, listCachedModels, cacheRoot, DEFAULT_REPO } from './cache.js';
export type { CachedModel } from './cache.js';

/** Progress of a pull: waiting for the lock, listing, downloading, then the conversion's phases. */
export interface PullProgress {
  phase: 'lock' | 'list' | 'download' | ConvertProgress['phase'] | 'done';
  /** Fraction of this phase done, 0 to 1. */
  progress: number;
  /** The file or tensor being worked on. */
  item?: string;
  /** download: bytes fetched so far of `totalBytes` (files already present count as fetched). */
  bytes?: number;
  totalBytes?: number;
}

export interface PullOptions {
  /** Hugging Face repository (optional, default 'ECOFRI/CXR-LLAVA-v2'). */
  repo?: string;
  /** Branch, tag or commit (optional, default 'main'). */
  revision?: string;
  /** Storage type of the text model (optional, default 'q8_0'). */
  type?: ConvertType;
  /** Storage type of the vision model (optional, default per convertCheckpoint). */
  visionType?: VisionType;
  /** Access token (optional, default $HF_TOKEN). */
  token?: string;
  /** Keep the downloaded checkpoint after converting (optional, default false). */
  keep?: boolean;
  /** Convert again even if this type of this commit is cached (optional, default false). */
  force?: boolean;
  /** Called as the pull proceeds (optional). */
  onProgress?: (p: PullProgress) => void;
  /** Cache root (optional, default cacheRoot()). */
  cacheDir?: string;
  /** Hub URL (optional, default $HF_ENDPOINT, else https://huggingface.co). */
  endpoint?: string;
  /** Attempts per request before giving up (optional, default 6). */
  retries?: number;
  /** First retry delay; doubles each time (optional, default 1000 ms). */
  retryDelayMs?: number;
  /** Abort a download that receives nothing for this long (optional, default 60000 ms). */
  stallTimeoutMs?: number;
  /** How often to look at another pull's lock (optional, default 1000 ms). */
  lockPollMs?: number;
}

/** Files the converter reads besides the weights; the others are optional. */
const REQUIRED_FILES = ['config.json', 'tokenizer.model'];
const OPTIONAL_FILES = ['tokenizer_config.json', 'added_tokens.json', 'special_tokens_map.json', 'generation_config.json'];
const INDEX_FILE = 'model.safetensors.index.json';

/** Most bytes taken for a file whose size the hub does not say (the shards are ~5 GB and sized). */
const MAX_UNSIZED_BYTES = 64 * 1024 * 1024 * 1024;

/** A shard name from the index: a plain file name, nothing a path could be made of. */
const SAFE_SHARD = /^[A-Za-z0-9][A-Za-z0-9._-]*\.safetensors$/;

/** An error that retrying cannot fix (auth, missing file, bad request). */
class FinalError extends CxrError {}

interface Ctx {
  endpoint: string;
  origin: string;
  token?: string;
  retries: number;
  retryDelayMs: number;
  stallTimeoutMs: number;
  userAgent: string;
}

function headersFor(ctx: Ctx, url: string, extra: Record<string, string> = {}): Record<string, string> {
  const h: Record<string, string> = { 'User-Agent': ctx.userAgent, 'Accept-Encoding': 'identity', ...extra };
  if (ctx.token && new URL(url).origin === ctx.origin) h.Authorization = `Bearer ${ctx.token}`;
  return h;
}

function httpError(ctx: Ctx, status: number, what: string): CxrError {
  if (status === 401 || status === 403) {
    return new FinalError(
      'ERR_IO',
      `${what}: HTTP ${status} (${ctx.token ? 'the token was refused' : 'authentication required'}). ` +
        `Accept the model's terms on the Hub if it is gated, and set HF_TOKEN or pass a token.`,
    );
  }
  if (status === 404) return new FinalError('ERR_IO', `${what}: HTTP 404 (not found)`);
  const retryable = status === 408 || status === 429 || status >= 500;
  const E = retryable ? CxrError : FinalError;
  return new E('ERR_IO', `${what}: HTTP ${status}`);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs `fn` until it succeeds, a FinalError, or `retries` attempts; `fn` says whether an attempt made progress. */
async function withRetries<T>(ctx: Ctx, what: string, fn: (progressed: () => void) => Promise<T>): Promise<T> {
  let failures = 0;
  for (;;) {
    let progressed = false;
    try {
      return await fn(() => (progressed = true));
    } catch (err) {
      if (err instanceof FinalError) throw err;
      // Attempts that moved the download forward do not use up the budget.
      failures = progressed ? 1 : failures + 1;
      if (failures >= ctx.retries) {
        throw new CxrError('ERR_IO', `${what}: failed after ${failures} attempt(s): ${(err as Error).message}`, { cause: err });
      }
      await sleep(ctx.retryDelayMs * 2 ** (failures - 1));
    }
  }
}

/** fetch with redirects followed by hand, so Authorization is dropped when the origin changes. */
async function request(ctx: Ctx, url: string, init: { method: 'GET' | 'HEAD'; headers?: Record<string, string>; signal?: AbortSignal }): Promise<{ res: Response; url: string; first: Response }> {
  let first: Response | undefined;
  for (let hops = 0; hops < 10; hops++) {
    let res: Response;
    try {
      res = await fetch(url, { method: init.method, headers: headersFor(ctx, url, init.headers), redirect: 'manual', signal: init.signal ?? null });
    } catch (err) {
      throw new CxrError('ERR_IO', `${url}: ${(err as Error).message}${(err as { cause?: Error }).cause ? ` (${(err as { cause: Error }).cause.message})` : ''}`);
    }
    first ??= res;
    const loc = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && loc) {
      await res.body?.cancel().catch(() => {});
      url = new URL(loc, url).toString();
      continue;
    }
    return { res, url, first };
  }
  throw new FinalError('ERR_IO', `${url}: too many redirects`);
}

/** What the hub says about one file before downloading it. */
interface RemoteFile {
  name: string;
  url: string;
  size?: number;
  /** Expected digest: sha256 for LFS files, git blob sha1 for files kept in git. */
  digest?: { algo: 'sha256' | 'git-sha1'; hex: string };
}

function parseEtag(v: string | null): RemoteFile['digest'] {
  if (!v) return undefined;
  const hex = v.replace(/^W\//, '').replace(/"/g, '').toLowerCase();
  if (/^[0-9a-f]{64}$/.test(hex)) return { algo: 'sha256', hex };
  if (/^[0-9a-f]{40}$/.test(hex)) return { algo: 'git-sha1', hex };
  return undefined;
}

async function headFile(ctx: Ctx, repo: string, commit: string, name: string): Promise<RemoteFile> {
  const url = `${ctx.endpoint}/${repo}/resolve/${encodeURIComponent(commit)}/${name.split('/').map(encodeURIComponent).join('/')}`;
  return withRetries(ctx, `${repo}/${name}`, async () => {
    // Look at the first hop: for an LFS file the hub's 302 carries X-Linked-Size/-Etag.
    let res: Response;
    try {
      res = await fetch(url, { method: 'HEAD', headers: headersFor(ctx, url), redirect: 'manual' });
    } catch (err) {
      throw new CxrError('ERR_IO', `${url}: ${(err as Error).message}`);
    }
    if (res.status >= 400) throw httpError(ctx, res.status, `${repo}/${name} at ${commit}`);
    const linkedSize = res.headers.get('x-linked-size');
    const linkedEtag = res.headers.get('x-linked-etag');
    let size = linkedSize !== null ? Number(linkedSize) : undefined;
    let digest = parseEtag(linkedEtag ?? res.headers.get('etag'));
    if (size === undefined && res.status >= 300 && res.status < 400) {
      // A redirect without X-Linked-*: ask the target.
      const { res: r2 } = await request(ctx, url, { method: 'HEAD' });
      if (r2.status >= 400) throw httpError(ctx, r2.status, `${repo}/${name} at ${commit}`);
      digest ??= parseEtag(r2.headers.get('etag'));
      const cl = r2.headers.get('content-length');
      if (cl !== null) size = Number(cl);
    } else if (size === undefined) {
      const cl = res.headers.get('content-length');
      if (cl !== null) size = Number(cl);
    }
    if (size !== undefined && !(Number.isSafeInteger(size) && size >= 0)) size = undefined;
    return { name, url, ...(size !== undefined ? { size } : {}), ...(digest ? { digest } : {}) };
  });
}

function newHasher(d: RemoteFile['digest'], size: number | undefined): Hash {
  if (d?.algo === 'git-sha1') {
    // git's blob id: sha1 over "blob <size>\0" + content.
    const h = createHash('sha1');
    h.update(`blob ${size ?? 0}\0`);
    return h;
  }
  return createHash('sha256');
}

async function hashFile(file: string, h: Hash, end?: number): Promise<void> {
  if (end === 0) return;
  for await (const chunk of createReadStream(file, { highWaterMark: 4 << 20, ...(end !== undefined ? { end: end - 1 } : {}) })) {
    h.update(chunk as Buffer);
  }
}

/** Whether `file` exists with the expected size and digest. */
async function verifyExisting(file: string, rf: RemoteFile): Promise<boolean> {
  const st = await stat(file).catch(() => null);
  if (!st || (rf.size !== undefined && st.size !== rf.size)) return false;
  if (!rf.digest) return true;
  const h = newHasher(rf.digest, st.size);
  await hashFile(file, h);
  return h.digest('hex') === rf.digest.hex;
}

/**
 * Downloads one file to `dest` through `dest.part`, resuming with Range after a dropped
 * connection, and checks its size and digest before renaming it into place. A file that
 * fails its checksum is downloaded once more from the start, then rejected.
 */
async function downloadFile(ctx: Ctx, rf: RemoteFile, dest: string, onBytes: (delta: number) => void): Promise<void> {
  const part = dest + '.part';
  let corrupt = 0;
  await withRetries(ctx, rf.name, async (progressed) => {
    let have = (await stat(part).catch(() => null))?.size ?? 0;
    if (rf.size !== undefined && have > rf.size) {
      onBytes(-have);
      await unlink(part);
      have = 0;
    }
    const ac = new AbortController();
    let stall: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(stall);
      stall = setTimeout(() => ac.abort(new Error(`no data for ${ctx.stallTimeoutMs} ms`)), ctx.stallTimeoutMs);
    };
    arm();
    try {
      const complete = rf.size !== undefined && have === rf.size;
      if (!complete) {
        const { res } = await request(ctx, rf.url, {
          method: 'GET',
          headers: have > 0 ? { Range: `bytes=${have}-` } : {},
          signal: ac.signal,
        });
        if (res.status === 416) {
          // The part is no prefix of this file: start over.
          await res.body?.cancel().catch(() => {});
          onBytes(-have);
          await unlink(part).catch(() => {});
          throw new CxrError('ERR_IO', `${rf.name}: server refused the resume range`);
        }
        if (res.status !== 200 && res.status !== 206) {
          await res.body?.cancel().catch(() => {});
          throw httpError(ctx, res.status, rf.name);
        }
        let offset = 0;
        if (res.status === 206) {
          const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
          if (!m || Number(m[1]) !== have) {
            await res.body?.cancel().catch(() => {});
            throw new FinalError('ERR_IO', `${rf.name}: server answered Range ${have}- with Content-Range ${res.headers.get('content-range')}`);
          }
          offset = have;
        } else if (have > 0) {
          onBytes(-have); // the server ignored Range: the whole file comes again
        }
        const fh = await open(part, offset > 0 ? 'a' : 'w');
        try {
          if (!res.body) throw new CxrError('ERR_IO', `${rf.name}: empty response body`);
          // A body longer than the size the hub announced (a lying Content-Length, an
          // endless stream) is cut off at the first byte too many, before it fills the disk.
          const limit = rf.size ?? MAX_UNSIZED_BYTES;
          let at = offset;
          for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
            arm();
            at += chunk.length;
            if (at > limit) {
              ac.abort(new Error('too long'));
              onBytes(-(at - chunk.length));
              await unlink(part).catch(() => {});
              throw new FinalError(
                'ERR_IO',
                `${rf.name}: the server sent more than the ${limit} bytes ${rf.size !== undefined ? 'it announced' : 'allowed for a file of unknown size'}; the mirror is broken or hostile, nothing was kept`,
              );
            }
            await fh.write(chunk);
            onBytes(chunk.length);
            progressed();
          }
          await fh.sync();
        } finally {
          await fh.close();
        }
      }
      clearTimeout(stall);
      // Verify the whole part against the hub's size and digest.
      const size = (await stat(part)).size;
      const h = newHasher(rf.digest, size);
      if (rf.size !== undefined && size !== rf.size) {
        throw new CxrError('ERR_IO', `${rf.name}: got ${size} bytes, expected ${rf.size}`);
      }
      if (rf.digest) {
        await hashFile(part, h);
        const got = h.digest('hex');
        if (got !== rf.digest.hex) {
          onBytes(-size);
          await unlink(part).catch(() => {});
          if (++corrupt >= 2) {
            throw new FinalError('ERR_IO', `${rf.name}: ${rf.digest.algo} ${got} does not match the hub's ${rf.digest.hex}, twice; not converting a corrupt file`);
          }
          throw new CxrError('ERR_IO', `${rf.name}: ${rf.digest.algo} mismatch, downloading again`);
        }
      }
      await rename(part, dest);
    } catch (err) {
      if (ac.signal.aborted && !(err instanceof CxrError)) {
        throw new CxrError('ERR_IO', `${rf.name}: ${(ac.signal.reason as Error).message}`);
      }
      throw err;
    } finally {
      clearTimeout(stall);
    }
  });
}

/** Lists the repository at `revision`: its commit and file names. */
async function listRepo(ctx: Ctx, repo: string, revision: string): Promise<{ commit: string; files: string[] }> {
  const url = `${ctx.endpoint}/api/models/${repo}/revision/${encodeURIComponent(revision)}`;
  return withRetries(ctx, `${repo}@${revision}`, async () => {
    const { res } = await request(ctx, url, { method: 'GET' });
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => {});
      throw httpError(ctx, res.status, `${repo} at revision ${revision}`);
    }
    const j = (await res.json()) as { sha?: unknown; siblings?: { rfilename?: unknown }[] };
    if (typeof j.sha !== 'string' || !/^[0-9a-f]{40}$/.test(j.sha) || !Array.isArray(j.siblings)) {
      throw new FinalError('ERR_IO', `${url}: unexpected answer (no commit sha or siblings)`);
    }
    return { commit: j.sha, files: j.siblings.map((s) => s.rfilename).filter((f): f is string => typeof f === 'string') };
  });
}

/**
 * Downloads the official checkpoint (safetensors shards, config and tokenizer; never the
 * duplicate pytorch_model-*.bin), verifies every file against the hub's size and digest,
 * converts it to `type` and stores both GGUFs in the cache. A second pull of the same
 * repository waits for the first to finish; a cached model of the same commit and type is
 * returned as is. Raw files are deleted after a successful conversion unless `keep`.
 */
export async function pullModel(options: PullOptions = {}): Promise<CachedModel> {
  if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'object', options);
  const repo = checkRepo(options.repo ?? DEFAULT_REPO);
  const revision = options.revision ?? 'main';
  if (typeof revision !== 'string' || revision.length === 0) throw invalidParameterError('revision', 'non-empty string', revision);
  const type = options.type ?? 'q8_0';
  if (!(CONVERT_TYPES as readonly string[]).includes(type)) throw invalidParameterError('type', `one of ${CONVERT_TYPES.join(', ')}`, type);
  if (options.visionType !== undefined && !(VISION_TYPES as readonly string[]).includes(options.visionType)) {
    throw invalidParameterError('visionType', `one of ${VISION_TYPES.join(', ')}`, options.visionType);
  }
  const endpoint = (options.endpoint ?? process.env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
  let origin: string;
  try {
    origin = new URL(endpoint).origin;
  } catch {
    throw invalidParameterError('endpoint', 'URL', endpoint);
  }
  const token = options.token ?? (process.env.HF_TOKEN || undefined);
  const version = converterVersion();
  const ctx: Ctx = {
    endpoint,
    origin,
    ...(token ? { token } : {}),
    retries: options.retries ?? 6,
    retryDelayMs: options.retryDelayMs ?? 1000,
    stallTimeoutMs: options.stallTimeoutMs ?? 60_000,
    userAgent: `cxr-llava/${version}`,
  };
  const onProgress = options.onProgress;
  const root = options.cacheDir ?? cacheRoot();

  const lockFile = path.join(root, 'locks', repo.replace('/', '__') + '.lock');
  const release = await acquireLock(lockFile, {
    pollMs: options.lockPollMs ?? 1000,
    onWait: (h) => onProgress?.({ phase: 'lock', progress: 0, item: `waiting for pid ${h.pid ?? '?'} on ${h.host ?? '?'}` }),
  });
  try {
    onProgress?.({ phase: 'list', progress: 0 });
    const { commit, files } = await listRepo(ctx, repo, revision);
    onProgress?.({ phase: 'list', progress: 1 });

    const cached = await cachedModel(repo, type, root);
    if (cached && cached.commit === commit && !options.force && (!options.visionType || cached.visionType === options.visionType)) {
      onProgress?.({ phase: 'done', progress: 1, item: cached.textPath });
      return cached;
    }

    for (const f of REQUIRED_FILES) {
      if (!files.includes(f)) throw new CxrError('ERR_IO', `${repo} at ${commit}: the repository has no ${f}; not a CXR-LLaVA checkpoint`);
    }
    const raw = rawDir(root, repo, commit);
    await mkdir(raw, { recursive: true });

    // The index names the shards, so it comes first; then everything else in one pass.
    const wanted = [...REQUIRED_FILES, ...OPTIONAL_FILES.filter((f) => files.includes(f))];
    let shards: string[];
    if (files.includes(INDEX_FILE)) {
      const rf = await headFile(ctx, repo, commit, INDEX_FILE);
      const dest = path.join(raw, INDEX_FILE);
      if (!(await verifyExisting(dest, rf))) await downloadFile(ctx, rf, dest, () => {});
      const index = JSON.parse(await readFile(dest, 'utf8')) as { weight_map?: Record<string, string> };
      shards = [...new Set(Object.values(index.weight_map ?? {}))].sort();
      for (const s of shards) {
        if (typeof s !== 'string' || !SAFE_SHARD.test(s) || path.basename(s) !== s || !files.includes(s)) {
          throw new CxrError('ERR_IO', `${repo} at ${commit}: ${INDEX_FILE} names ${JSON.stringify(s)}, which the repository does not have`);
        }
      }
    } else if (files.includes('model.safetensors')) {
      shards = ['model.safetensors'];
    } else {
      throw new CxrError('ERR_IO', `${repo} at ${commit}: no safetensors weights (only safetensors are converted, never pickled .bin files)`);
    }
    wanted.push(...shards);

    const remote: RemoteFile[] = [];
    for (const f of wanted) remote.push(await headFile(ctx, repo, commit, f));
    const totalBytes = remote.reduce((a, r) => a + (r.size ?? 0), 0);
    let bytes = 0;
    const report = (item: string): void =>
      onProgress?.({ phase: 'download', progress: totalBytes ? Math.min(1, bytes / totalBytes) : 1, item, bytes, totalBytes });
    const knownSha256: Record<string, string> = {};
    for (const rf of remote) {
      const dest = path.join(raw, rf.name);
      if (await verifyExisting(dest, rf)) {
        bytes += rf.size ?? 0;
      } else {
        await unlink(dest).catch(() => {});
        bytes += (await stat(dest + '.part').catch(() => null))?.size ?? 0;
        report(rf.name);
        await downloadFile(ctx, rf, dest, (delta) => {
          bytes += delta;
          report(rf.name);
        });
      }
      if (rf.digest?.algo === 'sha256') knownSha256[rf.name] = rf.digest.hex;
      report(rf.name);
    }

    const outDir = modelDir(root, repo, type);
    const result = await convertCheckpoint(raw, {
      outDir,
      type,
      ...(options.visionType ? { visionType: options.visionType } : {}),
      sourceRepo: repo,
      revision: commit,
      knownSha256,
      ...(onProgress ? { onProgress: (p: ConvertProgress) => onProgress(p) } : {}),
    });
    await writeManifest(outDir, {
      repo,
      revision,
      commit,
      type,
      visionType: result.visionType,
      textFile: path.basename(result.textPath),
      mmprojFile: path.basename(result.mmprojPath),
      pulledAt: new Date().toISOString(),
      converterVersion: version,
    });
    if (!options.keep) await rm(raw, { recursive: true, force: true });
    const done = await cachedModel(repo, type, root);
    if (!done) throw new CxrError('ERR_INTERNAL', `${outDir}: the converted model vanished`);
    onProgress?.({ phase: 'done', progress: 1, item: done.textPath });
    return done;
  } finally {
    await release();
  }
}

/** CLI-facing wrapper: validates string options as commander passes them, then pulls. */
export async function pullCommand(
  opts: { repo?: string; revision?: string; type?: string; visionType?: string; token?: string; keep?: boolean; force?: boolean },
  onProgress?: (p: PullProgress) => void,
): Promise<CachedModel> {
  const type = opts.type as ConvertType | undefined;
  const visionType = opts.visionType as VisionType | undefined;
  return pullModel({
    ...(opts.repo ? { repo: opts.repo } : {}),
    ...(opts.revision ? { revision: opts.revision } : {}),
    ...(type ? { type } : {}),
    ...(visionType ? { visionType } : {}),
    ...(opts.token ? { token: opts.token } : {}),
    keep: opts.keep === true,
    force: opts.force === true,
    ...(onProgress ? { onProgress } : {}),
  });
}
