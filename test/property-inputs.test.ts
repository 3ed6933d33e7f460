// Property-based fuzzing (fast-check) of the CLI's input expansion: any glob
// pattern expands without throwing and only to files that exist under its
// folder; a `-` list on stdin gives back exactly the paths it names, in order,
// whatever characters the file names hold (spaces, glob characters, quotes,
// leading dashes, Unicode).
import t from 'tap';
import fc from 'fast-check';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { expandInputs } from '../lib/cli/inputs.js';
import { params, RUNS } from './helpers/fuzz.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-inputs-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const NAMES = ['a.png', 'b.jpg', 'c d.png', '[x].png', '*.png', '?.dcm', '{a,b}.png', '-n.png', "it's.png", 'ü.tiff', 'IM0001', '.hidden.png', 'notes.txt', 'a]b.png', 'z-a.png'];
mkdirSync(path.join(dir, 'sub', 'deep'), { recursive: true });
for (const n of NAMES) {
  writeFileSync(path.join(dir, n), 'x');
  writeFileSync(path.join(dir, 'sub', n), 'x');
}
writeFileSync(path.join(dir, 'sub', 'deep', 'e.png'), 'x');
const existing = new Set<string>();
for (const n of NAMES) {
  existing.add(path.join(dir, n));
  existing.add(path.join(dir, 'sub', n));
}
existing.add(path.join(dir, 'sub', 'deep', 'e.png'));

const globChar = fc.constantFrom('*', '?', '[', ']', '{', '}', ',', '!', '-', '^', '\\', '.', 'a', 'b', 'z', 'p', 'n', 'g', '/', '**/', ' ', "'", 'ü', '(', ')', '$', '+', '|');
const pattern = fc.array(globChar, { minLength: 1, maxLength: 12 }).map((cs) => cs.join(''));

t.test(`${RUNS} glob patterns expand without throwing, only to existing files`, async (t) => {
  let matched = 0;
  await fc.assert(
    fc.asyncProperty(pattern, async (p) => {
      const got = await expandInputs([path.join(dir, p)]);
      for (const f of got) {
        if (f.error !== undefined) {
          if (!f.error.includes('no file matches this pattern') && !f.error.length) return false;
          continue;
        }
        matched++;
        // A literal path (no glob magic) is taken as given, even if it does not exist.
        if (!existing.has(path.resolve(f.path)) && /[*?[{]/.test(p)) return false;
      }
      return true;
    }),
    params(),
  );
  t.pass(`${RUNS} patterns, ${matched} matches, all of them existing files`);
});

const nameChar = fc.oneof(
  fc.constantFrom(' ', '*', '?', '[', ']', '{', '}', "'", '"', '-', '.', '#', '$', '\\', '\t', 'é', '中', '😀'),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }).filter((c) => !/[/\n\r\0]/.test(c)),
);
const fileName = fc
  .array(nameChar, { minLength: 1, maxLength: 20 })
  .map((cs) => cs.join(''))
  .filter((n) => n !== '.' && n !== '..' && n.trim() !== '' && Buffer.byteLength(n) < 200);

t.test(`${RUNS} '-' lists of odd file names come back exactly, in order`, async (t) => {
  const listDir = path.join(dir, 'list');
  let n = 0;
  await fc.assert(
    fc.asyncProperty(fc.uniqueArray(fileName, { minLength: 1, maxLength: 6 }), fc.boolean(), async (names, crlf) => {
      rmSync(listDir, { recursive: true, force: true });
      mkdirSync(listDir);
      const paths = names.map((name) => path.join(listDir, name));
      for (const p of paths) writeFileSync(p, 'x');
      // Duplicates and blank lines are dropped; CRLF line ends are accepted.
      const text = [...paths, '', paths[0]!].join(crlf ? '\r\n' : '\n');
      const got = await expandInputs(['-'], { stdin: Readable.from([Buffer.from(text)]) });
      n++;
      const same = got.length === paths.length && got.every((f, i) => f.path === paths[i] && f.error === undefined && f.rel === names[i]);
      if (!same) t.fail(`sent ${JSON.stringify(paths)}, got ${JSON.stringify(got)}`);
      return same;
    }),
    params(),
  );
  t.equal(n, RUNS);
});

// Found by the property above (case 8481): a class with a reversed range threw
// "Range out of order" from the RegExp constructor instead of matching nothing.
t.test('a reversed range in a glob class matches literally instead of throwing', async (t) => {
  const d = mkdtempSync(path.join(tmpdir(), 'cxr-glob-'));
  writeFileSync(path.join(d, 'a.png'), '');
  writeFileSync(path.join(d, '[b-a].png'), '');
  const got = await expandInputs([path.join(d, '[b-a].png')]);
  t.same(got.map((f) => path.basename(f.path)), ['[b-a].png']);
  rmSync(d, { recursive: true, force: true });
});
