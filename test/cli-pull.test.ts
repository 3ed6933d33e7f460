// `report` with an empty cache pulls the default model first (saying so, with the
// download size), then reports; the second run uses the cache. Against a local
// stand-in for the Hugging Face Hub (HF_ENDPOINT) serving a tiny checkpoint.
import t from 'tap';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { humanBytes } from '../lib/cli/format.js';
import { cleanEnv, imageBytes, runCli } from './helpers/cli.js';
import { SHARDS, writeOfficialCheckpoint } from './helpers/official-checkpoint.js';

const REPO = 'ECOFRI/CXR-LLAVA-v2';
const COMMIT = '0123456789abcdef0123456789abcdef01234567';
const root = mkdtempSync(path.join(tmpdir(), 'cxr-clipull-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const ckpt = await writeOfficialCheckpoint(path.join(root, 'upstream'));
const files = new Map(ckpt.files.map((f) => [f, readFileSync(path.join(ckpt.dir, f))]));
const gitSha1 = (b: Buffer): string => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
const requests: string[] = [];

// Every file served from "git" (ETag = blob sha1): the simplest route the client accepts.
const hub = http.createServer((req, res) => {
  const url = decodeURIComponent(req.url ?? '');
  requests.push(`${req.method} ${url}`);
  if (url === `/api/models/${REPO}/revision/main`) {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ sha: COMMIT, siblings: [...files.keys()].map((rfilename) => ({ rfilename })) }));
    return;
  }
  const prefix = `/${REPO}/resolve/${COMMIT}/`;
  const body = url.startsWith(prefix) ? files.get(url.slice(prefix.length)) : undefined;
  if (!body) {
    res.statusCode = 404;
    res.end();
    return;
  }
  res.setHeader('etag', `"${gitSha1(body)}"`);
  res.setHeader('content-length', body.length);
  res.end(req.method === 'HEAD' ? undefined : body);
});
await new Promise<void>((r) => hub.listen(0, '127.0.0.1', r));
t.teardown(() => hub.close());
const endpoint = `http://127.0.0.1:${(hub.address() as AddressInfo).port}`;

t.test('report on an empty cache pulls the model, says so with the size, then reports', async (t) => {
  const image = path.join(root, 'chest.png');
  writeFileSync(image, await imageBytes(64, 64, 3));
  const env = cleanEnv(root, { HF_ENDPOINT: endpoint });
  const args = ['report', image, '--jsonl', '--temperature', '0', '--max-tokens', '4', '--threads', '1'];
  const first = await runCli(args, { env, timeoutMs: 120_000 });
  t.equal(first.code, 0, first.stderr);
  t.match(first.stderr, /^No model in the cache yet: downloading ECOFRI\/CXR-LLAVA-v2 and converting it to GGUF/);
  // The size announced is that of the files the pull fetches after reading the index:
  // config, tokenizer and the safetensors shards (never tokenizer.json or the .bin copies).
  const fetchedFiles = ['config.json', 'tokenizer.model', 'tokenizer_config.json', 'added_tokens.json', 'special_tokens_map.json', 'generation_config.json', ...SHARDS];
  const total = fetchedFiles.reduce((a, f) => a + files.get(f)!.length, 0);
  t.match(first.stderr, new RegExp(`^Downloading ${humanBytes(total).replace('.', '\\.')} \\(the official safetensors checkpoint\\)\\.$`, 'm'));
  t.match(first.stderr, /^Model ready: .*cxr-llava-v2\.q8_0\.gguf$/m);
  const rec = JSON.parse(first.stdout) as { model: string; text: string; error: null };
  t.equal(rec.model, 'cxr-llava-v2.q8_0.gguf');
  t.equal(rec.error, null);

  const fetched = requests.length;
  const second = await runCli(args, { env });
  t.equal(second.code, 0, second.stderr);
  t.equal(second.stderr, '', 'the cached model is used without a word');
  t.equal(requests.length, fetched, 'no request to the hub');
  t.equal((JSON.parse(second.stdout) as { text: string }).text, rec.text, 'greedy: the same text from the cached model');
});
