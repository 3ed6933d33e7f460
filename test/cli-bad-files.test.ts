// A 1000-file batch on the tiny model with 10% bad files, through the real CLI:
// garbage bytes, truncated PNGs and JPEGs, empty files, a GIF named .png,
// broken symbolic links, and files the user may not read (mode 000: as root,
// which reads any file whatever its mode, the CLI runs as `nobody` so the
// permission check is real), plus a folder named x.png, which is not an input.
// Good files with the wrong extension (a PNG named .jpg) are read by content.
// Checked: exit 1, exact ok/failed counts, one record per input with the
// reason for each bad one, and the process's memory flat over the run.
import t from 'tap';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cleanEnv, imageBytes, MEM_SAMPLER, startCli, writeTinyCxrModel } from './helpers/cli.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-badfiles-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
chmodSync(dir, 0o755); // readable by `nobody` below
const modelDir = path.join(dir, 'model');
await writeTinyCxrModel(modelDir);
const batch = path.join(dir, 'batch');
mkdirSync(batch);

const asRoot = process.getuid?.() === 0;
const NOBODY = 65534;

/** Expected outcome per input path: null for a report, else a pattern its error must match. */
const expected = new Map<string, RegExp | null>();
const name = (i: number, ext: string) => path.join(batch, `f${String(i).padStart(4, '0')}${ext}`);
// A few distinct good images, copied: decoding cost is what matters, not variety.
const pngs = await Promise.all([0, 1, 2, 3, 4].map((s) => imageBytes(32, 32, s)));
const jpgs = await Promise.all([5, 6, 7].map((s) => imageBytes(40, 32, s, 'jpeg')));
let seed = 12345;
const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;

for (let i = 0; i < 1000; i++) {
  const k = i % 10 === 7 ? Math.floor(i / 10) % 10 : -1; // every tenth file is bad, of kind k
  let file: string;
  if (k === -1) {
    const png = i % 3 !== 0;
    // Every 50th good file has the other format's extension: read by content, still good.
    const wrongExt = i % 50 === 1;
    file = name(i, png !== wrongExt ? '.png' : '.jpg');
    writeFileSync(file, png ? pngs[i % pngs.length]! : jpgs[i % jpgs.length]!);
    expected.set(file, null);
    continue;
  }
  switch (k) {
    case 0:
    case 1: // garbage
      file = name(i, '.png');
      writeFileSync(file, Buffer.from([0x5a, ...Array.from({ length: 200 + i }, rand)]));
      expected.set(file, /: not a supported image \(supported formats: PNG, JPEG, TIFF and WebP\)$/);
      break;
    case 2: // truncated PNG
      file = name(i, '.png');
      writeFileSync(file, pngs[0]!.subarray(0, 30 + (i % 300)));
      expected.set(file, /: the PNG data is truncated or corrupt$/);
      break;
    case 3: // truncated JPEG
      file = name(i, '.jpg');
      writeFileSync(file, jpgs[0]!.subarray(0, 10 + (i % 500)));
      expected.set(file, /: the JPEG data is truncated or corrupt$/);
      break;
    case 4:
    case 5: // empty
      file = name(i, '.png');
      writeFileSync(file, Buffer.alloc(0));
      expected.set(file, /: the file is empty$/);
      break;
    case 6: // wrong extension, and not an image we read: a GIF named .png
      file = name(i, '.png');
      writeFileSync(file, Buffer.from('GIF89a\x20\x00\x20\x00\x80\x00\x00', 'latin1'));
      expected.set(file, /: not a supported image/);
      break;
    case 7: // a broken symbolic link
      file = name(i, '.png');
      symlinkSync(path.join(dir, `gone-${i}.png`), file);
      expected.set(file, /: file not found$/);
      break;
    default: // 8, 9: no read permission
      file = name(i, '.png');
      writeFileSync(file, pngs[1]!);
      chmodSync(file, 0o000);
      expected.set(file, /: cannot read the file \(EACCES\)$/);
  }
}
// A folder with an image's name is a folder: not an input, no record.
mkdirSync(path.join(batch, 'x.png'));
copyFileSync(path.join(modelDir, 'cxr-llava-v2.f32.gguf'), path.join(dir, 'unrelated.bin'));

const bad = [...expected.values()].filter((v) => v !== null).length;
t.equal(expected.size, 1000);
t.equal(bad, 100);

t.test('1000 files, 100 bad: exit 1, 900 reports, 100 error records naming the problem, RSS flat', async (t) => {
  if (asRoot) t.comment(`running the CLI as uid ${NOBODY}: root reads mode-000 files (CAP_DAC_OVERRIDE)`);
  const logs = path.join(dir, 'logs');
  mkdirSync(logs, { mode: 0o777 });
  chmodSync(logs, 0o777); // the CLI may run as nobody
  const memLog = path.join(logs, 'mem.jsonl');
  const run = startCli(['report', batch, '--jsonl', '--model', modelDir, '--temperature', '0', '--max-tokens', '4', '--threads', '1', '--parallel', '2'], {
    env: cleanEnv(dir, { HOME: dir, CXR_MEM_LOG: memLog, CXR_MEM_EVERY_MS: '100' }),
    nodeArgs: ['--expose-gc', '--require', MEM_SAMPLER],
    timeoutMs: 600_000,
    ...(asRoot ? { uid: NOBODY, gid: NOBODY } : {}),
  });
  const r = await run.done;

  t.equal(r.code, 1, 'exit 1: some inputs failed');
  const recs = r.stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { file: string; text: string | null; error: string | null });
  t.equal(recs.length, 1000, 'one record per input');
  t.same(recs.map((x) => x.file), [...expected.keys()].sort(), 'each input once, in order, and the folder x.png not among them');
  const wrong: string[] = [];
  for (const x of recs) {
    const want = expected.get(x.file);
    if (want === null && (x.error !== null || typeof x.text !== 'string')) wrong.push(`${x.file}: expected a report, got ${x.error}`);
    if (want && (x.text !== null || !x.error?.startsWith(x.file + ':') || !want.test(x.error))) wrong.push(`${x.file}: expected ${want}, got ${x.error}`);
  }
  t.same(wrong, [], 'every record as expected');
  t.equal(recs.filter((x) => x.error === null).length, 900);
  t.match(r.stderr, /^900 done, 100 failed in \d+:\d\d$/m);
  t.equal(r.stderr.split('\n').filter((l) => l.startsWith('error: ')).length, 100, 'one error line per bad file');

  // Flat: what the process holds after a full GC (sampled every 100 ms: on a quiet machine the whole batch takes ~5 s), in the last
  // quarter of the run against the second; the first quarter is left out (the model
  // loads, the heap settles). A record kept per input (~1 KB) shows in the heap.
  const samples = readFileSync(memLog, 'utf8')
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as { rss: number; heapUsed: number });
  t.ok(samples.length >= 20, `${samples.length} memory samples`);
  const MiB = 1024 * 1024;
  const q = Math.floor(samples.length / 4);
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  const at = (from: number, to: number, k: 'rss' | 'heapUsed') => median(samples.slice(from, to).map((s) => s[k])) / MiB;
  const rss = [at(q, 2 * q, 'rss'), at(3 * q, samples.length, 'rss')] as const;
  const heap = [at(q, 2 * q, 'heapUsed'), at(3 * q, samples.length, 'heapUsed')] as const;
  const peak = Math.max(...samples.map((s) => s.rss)) / MiB;
  t.comment(`RSS MiB after GC: 2nd quarter ${rss[0].toFixed(1)}, last quarter ${rss[1].toFixed(1)}, peak ${peak.toFixed(1)}; JS heap MiB: ${heap[0].toFixed(2)} -> ${heap[1].toFixed(2)} (${samples.length} samples)`);
  t.ok(rss[1] - rss[0] < 8, `RSS grew ${(rss[1] - rss[0]).toFixed(1)} MiB from the 2nd to the last quarter (< 8)`);
  t.ok(heap[1] - heap[0] < 0.25, `JS heap grew ${(heap[1] - heap[0]).toFixed(2)} MiB from the 2nd to the last quarter (< 0.25)`);
});
