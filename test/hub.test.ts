// pullModel against a local stand-in for the Hugging Face Hub (HF_ENDPOINT): the
// revision API, resolve/ with redirects to a CDN on another origin, LFS size and sha256
// headers, Range resumes after dropped connections, auth, 404, corrupt downloads, the
// cache lock, and the default-model lookup.
import t from 'tap';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { cacheRoot, pullModel, resolveDefaultModel, type PullProgress } from '../lib/hub/hub.js';
import { readGgufInfo } from '../lib/runtime/tensors.js';
import { writeOfficialCheckpoint } from './helpers/official-checkpoint.js';

const REPO = 'ECOFRI/CXR-LLAVA-v2';
const COMMIT = 'c0ffee0123456789abcdef0123456789abcdef01';
const TOKEN = 'hf_test_secret';

const root = mkdtempSync(path.join(tmpdir(), 'cxr-hub-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const ckpt = await writeOfficialCheckpoint(path.join(root, 'upstream'));
const content = new Map(ckpt.files.map((f) => [f, readFileSync(path.join(ckpt.dir, f))]));
// Files the hub keeps in LFS (weights and the binary tokenizer); the JSON files live in git.
const isLfs = (f: string): boolean => /\.(safetensors|bin|model)$/.test(f);
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const gitSha1 = (b: Buffer): string => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');

interface Logged {
  method: string;
  url: string;
  range?: string;
  auth?: string;
}

/** The hub and its CDN, with switches for the failures under test. */
class FakeHub {
  log: Logged[] = [];
  cdnLog: Logged[] = [];
  requireToken = false;
  /** file -> bytes after which the next GET of it is cut off (once each). */
  dropAfter = new Map<string, number>();
  /** file -> how many more GETs serve a damaged copy. */
  corrupt = new Map<string, number>();
  private hub!: http.Server;
  private cdn!: http.Server;
  endpoint = '';
  cdnBase = '';

  async start(): Promise<void> {
    this.cdn = http.createServer((req, res) => this.serveCdn(req, res));
    this.hub = http.createServer((req, res) => this.serveHub(req, res));
    await new Promise<void>((r) => this.cdn.listen(0, '127.0.0.1', r));
    await new Promise<void>((r) => this.hub.listen(0, '127.0.0.1', r));
    this.cdnBase = `http://127.0.0.1:${(this.cdn.address() as AddressInfo).port}`;
    this.endpoint = `http://127.0.0.1:${(this.hub.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.hub.closeAllConnections();
    this.cdn.closeAllConnections();
    await Promise.all([new Promise((r) => this.hub.close(r)), new Promise((r) => this.cdn.close(r))]);
  }

  /** file name of every body served (GET, whole or ranged), hub and CDN together. */
  served: string[] = [];

  /** How many times the body of `file` was sent. */
  gets(file: string): number {
    return this.served.filter((f) => f === file).length;
  }

  /** Every request, any method, whose URL mentions `text`. */
  mentions(text: string): Logged[] {
    return [...this.log, ...this.cdnLog].filter((l) => l.url.includes(text));
  }

  private serveHub(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = decodeURIComponent(req.url ?? '');
    this.log.push({
      method: req.method!,
      url,
      ...(req.headers.range ? { range: req.headers.range } : {}),
      ...(req.headers.authorization ? { auth: req.headers.authorization } : {}),
    });
    if (this.requireToken && req.headers.authorization !== `Bearer ${TOKEN}`) {
      res.writeHead(401, { 'Content-Type': 'application/json' }).end('{"error":"Access to model is restricted."}');
      return;
    }
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/(.+)$/.exec(url);
    if (api) {
      if (api[1] !== REPO || (api[2] !== 'main' && api[2] !== COMMIT)) {
        res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"error":"Revision Not Found"}');
        return;
      }
      const siblings = [...content.keys(), 'README.md', 'CXR_LLAVA_HF.py'].map((rfilename) => ({ rfilename }));
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ id: REPO, sha: COMMIT, siblings }));
      return;
    }
    const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url);
    const body = m && m[1] === REPO && (m[2] === COMMIT || m[2] === 'main') ? content.get(m[3]!) : undefined;
    if (!m || !body) {
      res.writeHead(404, { 'X-Error-Code': 'EntryNotFound' }).end();
      return;
    }
    const file = m[3]!;
    const common = { 'X-Repo-Commit': COMMIT };
    if (isLfs(file)) {
      // LFS: a redirect to a pre-signed CDN URL; the hub's answer carries size and sha256.
      res.writeHead(302, {
        ...common,
        Location: `${this.cdnBase}/blobs/${sha256(body)}?file=${encodeURIComponent(file)}&sig=abc`,
        'X-Linked-Size': String(body.length),
        'X-Linked-Etag': `"${sha256(body)}"`,
        ETag: `"${gitSha1(Buffer.from('pointer'))}"`,
      });
      res.end();
      return;
    }
    this.send(req, res, file, body, { ...common, ETag: `"${gitSha1(body)}"` });
  }

  private serveCdn(req: http.IncomingMessage, res: http.ServerResponse): void {
    const u = new URL(req.url ?? '/', this.cdnBase);
    this.cdnLog.push({
      method: req.method!,
      url: `/${u.searchParams.get('file')}`,
      ...(req.headers.range ? { range: req.headers.range } : {}),
      ...(req.headers.authorization ? { auth: req.headers.authorization } : {}),
    });
    const file = u.searchParams.get('file') ?? '';
    const body = content.get(file);
    if (!body || u.pathname !== `/blobs/${sha256(body)}`) {
      res.writeHead(404).end();
      return;
    }
    if (req.headers.authorization) {
      // Pre-signed URLs reject extra credentials, as S3 does.
      res.writeHead(400).end('Only one auth mechanism allowed');
      return;
    }
    this.send(req, res, file, body, {});
  }

  /** Serves `body`, honouring Range, dropping or corrupting it when asked. */
  private send(req: http.IncomingMessage, res: http.ServerResponse, file: string, body: Buffer, headers: Record<string, string>): void {
    let start = 0;
    const range = req.headers.range;
    if (range) {
      const r = /^bytes=(\d+)-$/.exec(range);
      if (!r || Number(r[1]) >= body.length) {
        res.writeHead(416, { 'Content-Range': `bytes */${body.length}` }).end();
        return;
      }
      start = Number(r[1]);
    }
    const part = body.subarray(start);
    const h = {
      ...headers,
      'Accept-Ranges': 'bytes',
      'Content-Length': String(part.length),
      ...(range ? { 'Content-Range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}),
    };
    res.writeHead(range ? 206 : 200, h);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    this.served.push(file);
    let data = part;
    const bad = this.corrupt.get(file) ?? 0;
    if (bad > 0) {
      this.corrupt.set(file, bad - 1);
      data = Buffer.from(part);
      data[data.length >> 1] ^= 0xff;
    }
    const cut = this.dropAfter.get(file);
    if (cut !== undefined && cut > start && cut < body.length) {
      this.dropAfter.delete(file);
      // Time for the client to read the bytes before the drop: at 5 ms a loaded machine lost them, and the resume then asked for the whole file.
      res.write(data.subarray(0, cut - start), () => setTimeout(() => res.socket?.destroy(), 100));
      return;
    }
    res.end(data);
  }
}

const hub = new FakeHub();
await hub.start();
t.teardown(() => hub.stop());

const fast = { retryDelayMs: 10, lockPollMs: 20, stallTimeoutMs: 5000 };
const savedEnv = { HF_ENDPOINT: process.env.HF_ENDPOINT, HF_TOKEN: process.env.HF_TOKEN };
process.env.HF_ENDPOINT = hub.endpoint;
delete process.env.HF_TOKEN;
t.teardown(() => {
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

const wanted = [
  'added_tokens.json', 'config.json', 'generation_config.json', 'model-00001-of-00003.safetensors',
  'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors', 'model.safetensors.index.json',
  'special_tokens_map.json', 'tokenizer.model', 'tokenizer_config.json',
];

function rawFiles(cache: string): string[] {
  return readdirSync(path.join(cache, 'raw', REPO, COMMIT)).sort();
}

let baseline: { cache: string; text: Buffer; mmproj: Buffer };

t.test('a pull downloads only what the converter needs, verified, and caches the GGUFs', async (t) => {
  const cache = path.join(root, 'cache-plain');
  hub.log = [];
  hub.cdnLog = [];
  hub.served = [];
  const phases = new Set<string>();
  const m = await pullModel({ cacheDir: cache, keep: true, ...fast, onProgress: (p: PullProgress) => phases.add(p.phase) });
  t.equal(m.commit, COMMIT);
  t.equal(m.revision, 'main');
  t.equal(m.type, 'q8_0');
  t.equal(m.textPath, path.join(cache, 'models', REPO, 'q8_0', 'cxr-llava-v2.q8_0.gguf'));
  t.equal(m.mmprojPath, path.join(cache, 'models', REPO, 'q8_0', 'mmproj-cxr-llava-v2.q8_0.gguf'));
  t.same([...phases], ['list', 'download', 'hash', 'text', 'vision', 'done']);
  t.same(rawFiles(cache), wanted, 'kept raw files: exactly the needed ones');
  for (const f of wanted) t.ok(readFileSync(path.join(cache, 'raw', REPO, COMMIT, f)).equals(content.get(f)!), `${f} identical`);
  t.same(hub.mentions('pytorch_model'), [], 'pickled shards never requested, not even HEAD');
  t.same(hub.mentions('tokenizer.json'), [], 'tokenizer.json not needed');
  for (const f of wanted) t.equal(hub.gets(f), 1, `${f} sent once`);
  t.ok(hub.log.some((l) => l.method === 'HEAD' && l.url.includes(`/resolve/${COMMIT}/`)), 'files resolved at the listed commit');
  t.ok(hub.cdnLog.length >= 4, 'LFS files come from the CDN');
  const meta = readGgufInfo(m.textPath).metadata;
  t.equal(meta['cxr.source.revision'], COMMIT);
  t.equal(meta['general.source.huggingface.repository'], REPO);
  const shaOf = new Map((meta['cxr.source.files'] as string[]).map((f, i) => [f, (meta['cxr.source.sha256'] as string[])[i]]));
  t.equal(shaOf.get('model-00002-of-00003.safetensors'), sha256(content.get('model-00002-of-00003.safetensors')!));
  baseline = { cache, text: readFileSync(m.textPath), mmproj: readFileSync(m.mmprojPath) };

  // Pulling again finds the commit cached: one listing, no downloads.
  hub.log = [];
  hub.cdnLog = [];
  hub.served = [];
  const again = await pullModel({ cacheDir: cache, ...fast });
  t.equal(again.textPath, m.textPath);
  t.same(hub.log.map((l) => l.method + ' ' + l.url), [`GET /api/models/${REPO}/revision/main`]);
  t.same(hub.cdnLog, []);
});

t.test('dropped connections resume with Range and give the same files', async (t) => {
  const cache = path.join(root, 'cache-resume');
  hub.log = [];
  hub.cdnLog = [];
  hub.served = [];
  const s1 = content.get('model-00001-of-00003.safetensors')!.length;
  const s3 = content.get('model-00003-of-00003.safetensors')!.length;
  hub.dropAfter.set('model-00001-of-00003.safetensors', Math.floor(s1 / 3));
  hub.dropAfter.set('model-00003-of-00003.safetensors', Math.floor(s3 / 2));
  hub.dropAfter.set('config.json', 100);
  const m = await pullModel({ cacheDir: cache, keep: true, ...fast });
  t.same(hub.dropAfter.size, 0, 'every planned drop happened');
  const resumed = hub.cdnLog.filter((l) => l.range).map((l) => `${l.url} ${l.range}`);
  t.same(resumed.sort(), [
    `/model-00001-of-00003.safetensors bytes=${Math.floor(s1 / 3)}-`,
    `/model-00003-of-00003.safetensors bytes=${Math.floor(s3 / 2)}-`,
  ]);
  t.same(
    hub.log.filter((l) => l.method === 'GET' && l.url.endsWith('/config.json')).map((l) => l.range ?? 'whole'),
    ['whole', 'bytes=100-'],
    'a file kept in git resumes too',
  );
  t.same(rawFiles(cache), wanted);
  for (const f of wanted) t.ok(readFileSync(path.join(cache, 'raw', REPO, COMMIT, f)).equals(content.get(f)!), `${f} identical`);
  t.ok(readFileSync(m.textPath).equals(baseline.text), 'text GGUF byte-identical to the uninterrupted pull');
  t.ok(readFileSync(m.mmprojPath).equals(baseline.mmproj), 'mmproj GGUF byte-identical');
});

t.test('a corrupt download is fetched again, and never converted', async (t) => {
  const cache = path.join(root, 'cache-corrupt');
  hub.log = [];
  hub.cdnLog = [];
  hub.served = [];
  hub.corrupt.set('model-00002-of-00003.safetensors', 1);
  const m = await pullModel({ cacheDir: cache, ...fast });
  t.equal(hub.gets('model-00002-of-00003.safetensors'), 2, 'downloaded twice');
  t.ok(readFileSync(m.textPath).equals(baseline.text), 'the good copy was converted');
  t.notOk(existsSync(path.join(cache, 'raw', REPO, COMMIT)), 'raw files removed without keep');

  const cache2 = path.join(root, 'cache-corrupt2');
  hub.corrupt.set('model-00003-of-00003.safetensors', 99);
  await t.rejects(pullModel({ cacheDir: cache2, ...fast }), {
    message: /^model-00003-of-00003\.safetensors: sha256 [0-9a-f]{64} does not match the hub's [0-9a-f]{64}, twice; not converting a corrupt file$/,
  });
  hub.corrupt.clear();
  t.notOk(existsSync(path.join(cache2, 'models')), 'nothing converted');
});

t.test('auth: 401 without a token; the token goes to the hub only, never to the CDN', async (t) => {
  hub.requireToken = true;
  t.teardown(() => {
    hub.requireToken = false;
    delete process.env.HF_TOKEN;
  });
  await t.rejects(pullModel({ cacheDir: path.join(root, 'cache-auth0'), ...fast }), {
    message: /^ECOFRI\/CXR-LLAVA-v2 at revision main: HTTP 401 \(authentication required\)\. .*set HF_TOKEN or pass a token\.$/,
  });
  await t.rejects(pullModel({ cacheDir: path.join(root, 'cache-auth1'), token: 'wrong', ...fast }), {
    message: /HTTP 401 \(the token was refused\)/,
  });
  hub.log = [];
  hub.cdnLog = [];
  hub.served = [];
  const m = await pullModel({ cacheDir: path.join(root, 'cache-auth2'), token: TOKEN, ...fast });
  t.ok(existsSync(m.textPath));
  t.ok(hub.log.length > 0 && hub.log.every((l) => l.auth === `Bearer ${TOKEN}`), 'every hub request carries the token');
  t.ok(hub.cdnLog.length > 0 && hub.cdnLog.every((l) => l.auth === undefined), 'no CDN request carries it');
  process.env.HF_TOKEN = TOKEN;
  const m2 = await pullModel({ cacheDir: path.join(root, 'cache-auth3'), type: 'q4_0', ...fast });
  t.ok(existsSync(m2.textPath), 'HF_TOKEN from the environment');
});

t.test('404: unknown revision or repository', async (t) => {
  await t.rejects(pullModel({ cacheDir: path.join(root, 'cache-404'), revision: 'nope', ...fast }), {
    message: 'ECOFRI/CXR-LLAVA-v2 at revision nope: HTTP 404 (not found)',
  });
  await t.rejects(pullModel({ cacheDir: path.join(root, 'cache-404'), repo: 'someone/else', ...fast }), {
    message: 'someone/else at revision main: HTTP 404 (not found)',
  });
  await t.rejects(pullModel({ repo: '../etc', ...fast }), { code: 'ERR_INVALID_ARG' });
});

t.test('concurrent pulls: the second waits on the lock and reuses the first', async (t) => {
  const cache = path.join(root, 'cache-concurrent');
  hub.log = [];
  hub.cdnLog = [];
  hub.served = [];
  // Both start in the same tick; which one takes the lock first is up to the
  // file system, so record the waiting of either.
  const waited: PullProgress[] = [];
  const onProgress = (p: PullProgress): void => void (p.phase === 'lock' && waited.push(p));
  const a = pullModel({ cacheDir: cache, ...fast, onProgress });
  const b = pullModel({ cacheDir: cache, ...fast, onProgress });
  const [ma, mb] = await Promise.all([a, b]);
  t.equal(ma.textPath, mb.textPath);
  t.equal(waited.length, 1, 'exactly one pull reported waiting for the other');
  t.match(waited[0]!.item, new RegExp(`^waiting for pid ${process.pid} on `));
  for (const f of wanted) t.equal(hub.gets(f), 1, `${f} downloaded once`);
  t.notOk(existsSync(path.join(cache, 'locks', 'ECOFRI__CXR-LLAVA-v2.lock')), 'lock released');

  // A lock left by a process that is gone is taken over.
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
  mkdirSync(path.join(cache, 'locks'), { recursive: true });
  writeFileSync(path.join(cache, 'locks', 'ECOFRI__CXR-LLAVA-v2.lock'), JSON.stringify({ pid: dead, host: hostname(), started: 'then' }));
  const mc = await pullModel({ cacheDir: cache, type: 'f16', ...fast });
  t.ok(existsSync(mc.textPath), 'stale lock taken over');
});

t.test('resolveDefaultModel: last pulled, by type, or a hint to pull', async (t) => {
  const empty = path.join(root, 'cache-empty');
  await t.rejects(resolveDefaultModel({ cacheDir: empty }), {
    code: 'ERR_IO',
    message: `No model of ${REPO} in the cache at ${empty}. Run \`cxr-llava pull\` to download and convert it, or pass a GGUF path.`,
  });
  const cache = path.join(root, 'cache-concurrent'); // holds q8_0, then f16
  const last = await resolveDefaultModel({ cacheDir: cache });
  t.equal(last.type, 'f16', 'most recently pulled');
  t.equal((await resolveDefaultModel({ cacheDir: cache, type: 'q8_0' })).type, 'q8_0');
  await t.rejects(resolveDefaultModel({ cacheDir: cache, type: 'q4_k_m' }), {
    message: `No q4_k_m model of ${REPO} in the cache at ${cache} (cached: f16, q8_0). Run \`cxr-llava pull --type q4_k_m\` to download and convert it, or pass a GGUF path.`,
  });
  // A model folder whose GGUF went missing does not count.
  rmSync(last.textPath);
  t.equal((await resolveDefaultModel({ cacheDir: cache })).type, 'q8_0');
});

t.test('cache root from the environment', async (t) => {
  t.equal(cacheRoot({ CXR_LLAVA_HOME: '/data/cxr', XDG_CACHE_HOME: '/x' }), '/data/cxr');
  t.equal(cacheRoot({ XDG_CACHE_HOME: '/x/cache' }), '/x/cache/cxr-llava');
  t.match(cacheRoot({}), /[\\/]\.cache[\\/]cxr-llava$/);
});
