// Two `report --output DIR --resume` processes on the same folder at once, through
// the real CLI on the tiny model: no file is ever corrupted or replaced. Each
// output is published with a hard link that fails when the file exists, so every
// input is written by exactly one of the two (their "done" counts add up to the
// inputs), each skips what the other finished, and no temp file is left.
import t from 'tap';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cleanEnv, startCli, writeManyImages, writeTinyCxrModel } from './helpers/cli.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-concurrent-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const modelDir = path.join(dir, 'model');
await writeTinyCxrModel(modelDir);
const imgDir = path.join(dir, 'images');
const N = 150;
const images = await writeManyImages(imgDir, N);
const env = cleanEnv(dir);

const summary = /^(\d+) done, 0 failed(?:, (\d+) skipped \(output exists\))? in \d+:\d\d$/m;

for (const format of ['--jsonl', 'text'] as const) {
  t.test(`two runs at once, ${format === 'text' ? 'text files' : 'JSON records'}: every input written once, every file whole`, async (t) => {
    const out = path.join(dir, `out-${format}`);
    // No --seed: each run samples its own text, so a replaced file would show.
    const args = ['report', imgDir, '--output', out, '--resume', ...(format === 'text' ? [] : [format]), '--model', modelDir, '--max-tokens', '16', '--threads', '1'];
    const runs = [startCli(args, { env }), startCli(args, { env })];
    const results = await Promise.all(runs.map((r) => r.done));
    const counts = results.map((r) => {
      t.equal(r.code, 0, r.stderr);
      const m = summary.exec(r.stderr);
      t.ok(m, `a summary line in: ${r.stderr}`);
      return { done: Number(m?.[1] ?? NaN), skipped: Number(m?.[2] ?? 0) };
    });
    t.equal(counts[0]!.done + counts[1]!.done, N, `each input written by exactly one run (${counts[0]!.done} + ${counts[1]!.done})`);
    t.equal(counts[0]!.skipped + counts[1]!.skipped, N, 'and skipped by the other');
    t.comment(`the two runs wrote ${counts[0]!.done} and ${counts[1]!.done} of ${N}`);

    const ext = format === 'text' ? '.txt' : '.json';
    const files = readdirSync(out);
    t.same(files.sort(), images.map((f) => path.basename(f, '.png') + ext).sort(), 'one output per input, no temp file');
    const bad = files.filter((f) => {
      const body = readFileSync(path.join(out, f), 'utf8');
      if (format === 'text') return !body.endsWith('\n') || body.trim() === '';
      try {
        const rec = JSON.parse(body) as { file: string; error: unknown };
        return rec.file !== path.join(imgDir, path.basename(f, ext) + '.png') || rec.error !== null;
      } catch {
        return true;
      }
    });
    t.same(bad, [], 'every file a whole output of its own input');
  });
}
