// Property-based fuzzing of the DICOM reader and its codecs (fast-check): the
// test fixtures, every transfer syntax, mutated at the byte level. Whatever the
// bytes, decodeDicom resolves with a consistent image or rejects with an error
// naming the file; it never throws anything else or hangs.
import t, { type Test } from 'tap';
import fc from 'fast-check';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeDicom } from '../lib/inputs/dicom/index.js';
import { isClearError, mutated, params, RUNS } from './helpers/fuzz.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/dicom', import.meta.url));
const seeds = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.dcm'))
  .sort()
  .map((f) => new Uint8Array(readFileSync(path.join(FIXTURES, f))));

async function fuzz(t: Test, what: string, hot: number): Promise<void> {
  let decoded = 0;
  let rejected = 0;
  await fc.assert(
    fc.asyncProperty(mutated(seeds, hot), async (bytes) => {
      try {
        const img = await decodeDicom(bytes, 'fuzz.dcm');
        decoded++;
        return img.width > 0 && img.height > 0 && img.gray8.length === img.width * img.height;
      } catch (err) {
        rejected++;
        if (!isClearError(err, 'fuzz.dcm')) throw err;
        return true;
      }
    }),
    params(),
  );
  t.equal(decoded + rejected, RUNS, `${what}: ${decoded} decoded, ${rejected} rejected with a clear error`);
  t.ok(decoded > 0 && rejected > 0, `${what}: both outcomes reached`);
}

t.test(`decodeDicom on ${RUNS} files mutated anywhere (headers first): an image or an error naming the file`, async (t) => {
  t.ok(seeds.length >= 10, `${seeds.length} seed files`);
  await fuzz(t, 'headers', 2048);
});

t.test(`decodeDicom on ${RUNS} files with mutated pixel data: every codec survives`, (t) => fuzz(t, 'pixel data', -256));
