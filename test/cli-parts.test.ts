// The CLI's parts on their own (no model): input expansion and globs, the
// prefetching batch loop, output naming and atomic writes, the progress bar.
import t from 'tap';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { runPrefetched } from '../lib/cli/batch.js';
import { expandInputs, segmentRegExp } from '../lib/cli/inputs.js';
import { outputPath, planOutputs, writeAtomic } from '../lib/cli/output.js';
import { ProgressBar } from '../lib/cli/progress.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-parts-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const tree = ['a.png', 'b.JPG', 'IM0001', 'notes.txt', '.hidden.png', 'sub/c.dcm', 'sub/d.tiff', 'sub/deep/e.webp', 'sub/readme.md'];
for (const f of tree) {
  mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
  writeFileSync(path.join(dir, f), f);
}
const rel = (p: string) => path.relative(dir, p);

t.test('segment globs: *, ?, [...], [!...], {a,b}; a leading dot is never matched by a wildcard', async (t) => {
  t.ok(segmentRegExp('*.png').test('a.png'));
  t.notOk(segmentRegExp('*.png').test('.a.png'));
  t.ok(segmentRegExp('.*.png').test('.a.png'));
  t.ok(segmentRegExp('?.png').test('a.png'));
  t.notOk(segmentRegExp('?.png').test('ab.png'));
  t.ok(segmentRegExp('[ab].png').test('b.png'));
  t.notOk(segmentRegExp('[!ab].png').test('b.png'));
  t.ok(segmentRegExp('*.{png,jpg}').test('x.jpg'));
  t.notOk(segmentRegExp('*.{png,jpg}').test('x.gif'));
  t.ok(segmentRegExp('a+b(1).png').test('a+b(1).png'), 'regex characters are literal');
});

t.test('a folder gives its image files sorted; --recursive descends; explicit names are always taken', async (t) => {
  const flat = await expandInputs([dir]);
  t.same(flat.map((f) => rel(f.path)), ['IM0001', 'a.png', 'b.JPG']);
  t.same(flat.map((f) => f.rel), ['IM0001', 'a.png', 'b.JPG']);
  const deep = await expandInputs([dir], { recursive: true });
  t.same(deep.map((f) => f.rel), ['IM0001', 'a.png', 'b.JPG', 'sub/c.dcm', 'sub/d.tiff', 'sub/deep/e.webp']);
  const explicit = await expandInputs([path.join(dir, 'notes.txt'), path.join(dir, 'a.png'), path.join(dir, 'a.png')]);
  t.same(explicit.map((f) => f.rel), ['notes.txt', 'a.png'], 'named files are kept, repeats dropped');
});

t.test('globs, ** included, and - reading a list from stdin', async (t) => {
  t.same((await expandInputs([path.join(dir, '*.png')])).map((f) => rel(f.path)), ['a.png']);
  t.same((await expandInputs([path.join(dir, 'sub', '**', '*.*')])).map((f) => f.rel), ['c.dcm', 'd.tiff', 'readme.md', 'deep/e.webp']);
  t.same((await expandInputs([path.join(dir, '**')])).map((f) => rel(f.path)), ['IM0001', 'a.png', 'b.JPG', 'sub/c.dcm', 'sub/d.tiff', 'sub/deep/e.webp']);
  const none = await expandInputs([path.join(dir, '*.gif')]);
  t.equal(none.length, 1);
  t.equal(none[0]!.error, `${path.join(dir, '*.gif')}: no file matches this pattern`);
  const stdin = Readable.from([`${path.join(dir, 'a.png')}\r\n\n${path.join(dir, 'sub')}\n${path.join(dir, '*.png')}\n`]);
  const listed = await expandInputs(['-'], { stdin });
  t.same(listed.map((f) => rel(f.path)), ['a.png', 'sub/c.dcm', 'sub/d.tiff', '*.png'], 'lines are literal paths; folders expand');
});

t.test('prefetch: item N+1 is prepared while item N is consumed, results in order, failures kept', async (t) => {
  const log: string[] = [];
  await runPrefetched(
    [0, 1, 2, 3],
    async (i) => {
      log.push(`prepare ${i} start`);
      await new Promise((r) => setTimeout(r, 5));
      log.push(`prepare ${i} end`);
      if (i === 2) throw new Error('bad 2');
      return i * 10;
    },
    async (i, p) => {
      log.push(`consume ${i} start ${p.ok ? p.value : (p.error as Error).message}`);
      // "Generation": long enough for the next prepare to finish meanwhile.
      await new Promise((r) => setTimeout(r, 20));
      log.push(`consume ${i} end`);
    },
  );
  t.same(log, [
    // The first two start together: nothing is being consumed yet.
    'prepare 0 start',
    'prepare 1 start',
    'prepare 0 end',
    'consume 0 start 0',
    'prepare 1 end',
    'consume 0 end',
    'prepare 2 start',
    'consume 1 start 10',
    'prepare 2 end',
    'consume 1 end',
    'prepare 3 start',
    'consume 2 start bad 2',
    'prepare 3 end',
    'consume 2 end',
    'consume 3 start 30',
    'consume 3 end',
  ]);
});

t.test('output names swap the extension and keep subfolders; clashes are refused', async (t) => {
  t.equal(outputPath('/o', { path: 'x/a.png', rel: 'a.png' }, 'text'), path.join('/o', 'a.txt'));
  t.equal(outputPath('/o', { path: 'x/s/IM1', rel: 's/IM1' }, 'json'), path.join('/o', 's', 'IM1.json'));
  t.throws(() => planOutputs('/o', [{ path: 'p/a.png', rel: 'a.png' }, { path: 'q/a.jpg', rel: 'a.jpg' }], 'text'), {
    message: `p/a.png and q/a.jpg would both be written to ${path.join('/o', 'a.txt')}; rename one, or run them separately`,
  });
  const out = path.join(dir, 'out', 'sub', 'r.txt');
  await writeAtomic(out, 'one\n');
  await writeAtomic(out, 'two\n');
  t.equal(readFileSync(out, 'utf8'), 'two\n');
  t.same(readdirSync(path.dirname(out)), ['r.txt'], 'no temp file left behind');
});

t.test('the bar: count, stage, rate, ETA and item within the width; silent without a TTY', async (t) => {
  const fakeTty = Object.assign(new (await import('node:stream')).PassThrough(), { isTTY: true, columns: 80 }) as unknown as NodeJS.WriteStream;
  const bar = new ProgressBar({ stream: fakeTty, output: fakeTty });
  t.ok(bar.enabled);
  const t0 = Date.now();
  bar.update({ done: 0, total: 10, stage: 'encode', item: 'a.png' });
  bar.update({ done: 4, total: 10, stage: 'generate', note: '12.5 tok/s', item: 'some/long/folder/name/chest-000123.png' });
  const line = bar.render(90, t0 + 8000);
  // 4 images in 8 s: 0.5 img/s = 2.0 s/img, 6 left: 12 s.
  // Bar 90/4 = 22 wide, 0.4 of it filled; the name's start gives way to fit 90 columns.
  t.equal(line, '[#########-------------] 4/10  generate  12.5 tok/s  2.0 s/img  ETA 0:12  …hest-000123.png');
  t.equal(bar.render(200, t0 + 8000).slice(-38), 'some/long/folder/name/chest-000123.png', 'the whole name when it fits');
  bar.stop();
  const pipe = Object.assign(new (await import('node:stream')).PassThrough(), { isTTY: false }) as unknown as NodeJS.WriteStream;
  const silent = new ProgressBar({ stream: pipe });
  t.notOk(silent.enabled);
  silent.update({ done: 1, total: 2 });
  t.equal((pipe as unknown as { read(): unknown }).read(), null, 'nothing written into a pipe');
  t.notOk(new ProgressBar({ stream: fakeTty, quiet: true }).enabled, '--quiet');
});
