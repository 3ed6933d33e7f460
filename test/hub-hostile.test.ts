// `pull` against a hostile or broken mirror (HF_ENDPOINT on 127.0.0.1): file names
// with `..`, absolute paths or NUL bytes in the listing or the shard index, a
// Content-Length that lies, an endless body, a redirect loop. Each ends in a
// clear error (or, for names the converter never asks for, is ignored), and
// nothing is written outside the cache.
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pullModel } from '../lib/hub/hub.js';

const REPO = 'ECOFRI/CXR-LLAVA-v2';
const COMMIT = 'c0ffee0123456789abcdef0123456789abcdef01';
const root = mkdtempSync(path.join(tmpdir(), 'cxr-hostile-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));

interface Behaviour {
  siblings: string[];
  index?: unknown;
  /** file -> how it is served */
  files: Record<string, { body?: Buffer; announce?: number; endless?: boolean; loop?: boolean }>;
}

let behaviour: Behaviour = { siblings: [], files: {} };
const server = http.createServer((req, res) => {
  const url = decodeURIComponent(req.url ?? '');
  if (url.startsWith(`/api/models/${REPO}/revision/`)) {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ sha: COMMIT, siblings: behaviour.siblings.map((rfilename) => ({ rfilename })) }));
    return;
  }
  const m = /^\/(.+?)\/resolve\/([0-9a-f]{40})\/(.+)$/.exec(url);
  const name = m?.[3] ?? '';
  const f = name === 'model.safetensors.index.json' && behaviour.index !== undefined ? { body: Buffer.from(JSON.stringify(behaviour.index)) } : behaviour.files[name];
  if (!f) {
    res.statusCode = 404;
    res.end();
    return;
  }
  if (f.loop) {
    res.statusCode = 302;
    res.setHeader('location', req.url ?? '/');
    res.end();
    return;
  }
  const body = f.body ?? Buffer.alloc(0);
  res.setHeader('etag', `"${createHash('sha256').update(body).digest('hex')}"`);
  if (f.announce !== undefined) res.setHeader('x-linked-size', String(f.announce));
  else res.setHeader('content-length', String(body.length));
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  if (f.endless) {
    // Chunked, forever (until the client hangs up).
    const chunk = Buffer.alloc(64 * 1024, 7);
    const pump = (): void => {
      while (!res.destroyed && res.write(chunk));
      if (!res.destroyed) res.once('drain', pump);
    };
    res.removeHeader('content-length');
    pump();
    return;
  }
  res.removeHeader('content-length');
  res.end(body);
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
t.teardown(() => {
  server.closeAllConnections();
  server.close();
});
const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const fast = { endpoint, retries: 2, retryDelayMs: 1, stallTimeoutMs: 5000, lockPollMs: 10 };

/** Every file under `dir`, relative. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string): void => {
    for (const e of readdirSync(d)) {
      const p = path.join(d, e);
      if (statSync(p).isDirectory()) walk(p, rel ? `${rel}/${e}` : e);
      else out.push(rel ? `${rel}/${e}` : e);
    }
  };
  walk(dir, '');
  return out;
}

const config = Buffer.from(JSON.stringify({ architectures: ['CXRLLAVAForCausalLM'] }));
const good = { 'config.json': { body: config }, 'tokenizer.model': { body: Buffer.from('not really a tokenizer') } };

async function hostile(t: Test, what: string, b: Behaviour, message: RegExp): Promise<void> {
  behaviour = b;
  const sandbox = mkdtempSync(path.join(root, 'case-'));
  const cache = path.join(sandbox, 'cache');
  await t.rejects(pullModel({ cacheDir: cache, ...fast }), { code: 'ERR_IO', message }, what);
  // Nothing outside the cache: the sandbox holds only the cache folder.
  t.same(readdirSync(sandbox), ['cache'], `${what}: nothing written next to the cache`);
  for (const f of tree(cache)) if (f.includes('..') || f.includes('\0') || f.includes('evil')) t.fail(`${what}: wrote ${f}`);
  t.notOk(tree(cache).some((f) => f.endsWith('.part')), `${what}: no partial download left`);
}
t.test('hostile shard names in the index are refused', async (t) => {
  for (const name of ['../evil.safetensors', '/tmp/evil.safetensors', 'sub/../../evil.safetensors', 'evil\0.safetensors', '..\\evil.safetensors']) {
    await hostile(
      t,
      JSON.stringify(name),
      { siblings: ['config.json', 'tokenizer.model', 'model.safetensors.index.json', name], index: { weight_map: { 'a.weight': name } }, files: { ...good, [name]: { body: Buffer.alloc(8) } } },
      /model\.safetensors\.index\.json names .*which the repository does not have/,
    );
  }
});

t.test('hostile names in the listing are never used as paths', async (t) => {
  // The converter asks for fixed names only; a listing of traps changes nothing
  // but which optional files exist. The pull then fails on the missing weights.
  await hostile(
    t,
    'listing traps',
    { siblings: ['config.json', 'tokenizer.model', '../../evil.json', '/etc/evil', 'evil\0.json', '../tokenizer_config.json'], files: good },
    /no safetensors weights/,
  );
});

t.test('a Content-Length that lies, or an endless body, is cut off at the announced size', async (t) => {
  const shard = 'model.safetensors';
  await hostile(t, 'lying size', { siblings: ['config.json', 'tokenizer.model', shard], files: { ...good, [shard]: { body: Buffer.alloc(4096, 1), announce: 100 } } }, /model\.safetensors: the server sent more than the 100 bytes it announced/);
  await hostile(t, 'endless body', { siblings: ['config.json', 'tokenizer.model', shard], files: { ...good, [shard]: { endless: true, announce: 1 << 20 } } }, /model\.safetensors: the server sent more than the 1048576 bytes it announced/);
});

t.test('a redirect loop is a clear error', async (t) => {
  await hostile(t, 'redirect loop', { siblings: ['config.json', 'tokenizer.model', 'model.safetensors'], files: { ...good, 'config.json': { loop: true } } }, /too many redirects/);
});
