// Bad DICOM input: each case is a CxrError ERR_IMAGE whose message names the
// file and the reason; and a batch of files goes on past the bad ones.
// (12-bit JPEG is decoded now: its tests and its bad cases are in dicom-jpeg12.test.ts.)

import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CxrError } from '../lib/errors.js';
import { loadGray8, preprocessImage } from '../lib/index.js';
import { isDicom } from '../lib/inputs/dicom/index.js';

const dir = join(import.meta.dirname, 'fixtures', 'dicom');
const read = (file: string) => new Uint8Array(readFileSync(join(dir, file)));
/** The public entry point a user calls with bytes, named as the CLI names a file. */
const decodeDicom = (bytes: Uint8Array, name: string, opts: object = {}) => loadGray8(Buffer.from(bytes), { name, ...opts });

const cases: [string, string][] = [
  ['bad-sr-no-pixels.dcm', 'bad-sr-no-pixels.dcm: no pixel data in this DICOM file (modality SR); it is not an image'],
  ['bad-truncated.dcm', 'bad-truncated.dcm: truncated pixel data element: 20600 of 25600 bytes present'],
  ['bad-unsupported-ts.dcm', 'bad-unsupported-ts.dcm: unsupported transfer syntax JPEG 2000 Part 2 Multi-component (Lossless Only) (1.2.840.10008.1.2.4.92)'],
  ['bad-huge.dcm', 'bad-huge.dcm: image size 65535x65535 is beyond the limit (32768 per side, 268435456 pixels)'],
];

for (const [file, message] of cases) {
  t.test(file, async (t) => {
    await t.rejects(decodeDicom(read(file), file), { name: 'CxrError', code: 'ERR_IMAGE', message });
    // From a path the message names the path.
    await t.rejects(preprocessImage(join(dir, file)), { code: 'ERR_IMAGE', message: join(dir, message) });
  });
}

t.test('native pixel data shorter than one frame', async (t) => {
  // Cut the pixel data element's value but fix its length field so the parser
  // reads to the end: the frame-size check must catch it.
  const bytes = read('evrle.dcm');
  const cut = bytes.slice(0, bytes.length - 100);
  const dv = new DataView(cut.buffer);
  // explicit VR LE, OW: tag(4) VR(2) reserved(2) length(4) at the last 25600 + 12 bytes
  const lenPos = bytes.length - 25600 - 4;
  t.equal(dv.getUint32(lenPos, true), 25600, 'found the length field');
  dv.setUint32(lenPos, 25500, true);
  await t.rejects(decodeDicom(cut, 'short.dcm'), {
    code: 'ERR_IMAGE',
    message: 'short.dcm: truncated pixel data element: 25500 bytes, need 25600 for one 128x100 frame',
  });
});

t.test('a batch goes on past bad files', async (t) => {
  const files = ['evrle.dcm', 'bad-sr-no-pixels.dcm', 'rle.dcm', 'bad-truncated.dcm', 'jpegls-lossless.dcm'];
  const results = await Promise.allSettled(files.map((f) => decodeDicom(read(f), f)));
  t.same(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled', 'rejected', 'fulfilled']);
  for (const r of results) if (r.status === 'rejected') t.ok(r.reason instanceof CxrError);
});

t.test('options are validated', async (t) => {
  const bytes = read('ivrle.dcm');
  await t.rejects(decodeDicom(bytes, 'ivrle.dcm', { voi: 0 }), { code: 'ERR_INVALID_ARG', message: 'Expected positive integer for voi but received 0' });
  await t.rejects(decodeDicom(bytes, 'ivrle.dcm', { window: { center: 10, width: 0 } }), {
    code: 'ERR_INVALID_ARG',
    message: 'Expected number >= 1 for window.width but received 0',
  });
  await t.rejects(decodeDicom(bytes, 'ivrle.dcm', { voi: 3 }), { code: 'ERR_IMAGE', message: 'ivrle.dcm: voi 3 asked for, but the file has 2 window(s)' });
  await t.rejects(decodeDicom(read('evrle.dcm'), 'evrle.dcm', { voi: 2 }), {
    code: 'ERR_IMAGE',
    message: 'evrle.dcm: voi 2 asked for, but the file has no VOI LUT or window',
  });
});

t.test('isDicom looks at content, not the name', async (t) => {
  t.ok(isDicom(read('ivrle.dcm')));
  t.notOk(isDicom(read('same8.png')));
  t.notOk(isDicom(new Uint8Array(131)));
  const fake = new Uint8Array(200);
  fake.set([0x44, 0x49, 0x43, 0x4d], 128);
  t.ok(isDicom(fake), 'DICM at 128 is enough to route it');
  await t.rejects(decodeDicom(fake, 'fake.bin'), { code: 'ERR_IMAGE', message: /^fake\.bin: / });
});

/** A fixture with its Rows changed (explicit VR LE: tag, "US", length, value). */
function withRows(file: string, rows: number): Buffer {
  const b = Buffer.from(read(file));
  const at = b.indexOf(Buffer.from([0x28, 0x00, 0x10, 0x00, 0x55, 0x53]));
  if (at < 0) throw new Error(`${file}: no Rows element`);
  b.writeUInt16LE(rows, at + 8);
  return b;
}

const WRONG_SIZE: [string, RegExp][] = [
  ['m-c12-jpeg-sv1.dcm', /cannot decode JPEG Lossless, Non-Hierarchical, First-Order Prediction .* pixel data \(decoded 4096 samples, but 64x\d+x1 needs \d+\)/],
  ['m-c12-jpeg-p14-sv4.dcm', /cannot decode JPEG Lossless, Non-Hierarchical \(Process 14\) pixel data \(decoded 4096 samples/],
  ['m-c12-rle.dcm', /cannot decode RLE Lossless pixel data \(RLE segment 1 holds 4097 bytes, but 64x\d+ needs \d+\)/],
  ['m-crgb-rle.dcm', /cannot decode RLE Lossless pixel data \(RLE segment 1 holds/],
  ['m-c12-jpegls.dcm', /cannot decode JPEG-LS Lossless pixel data \(decoded frame is 64x64 but the header says 64x\d+\)/],
  ['m-c12-j2k.dcm', /cannot decode JPEG 2000 \(Lossless Only\) pixel data \(decoded frame is 64x64/],
  ['m-c8-jpeg-baseline.dcm', /cannot decode JPEG Baseline \(Process 1\) pixel data \(decoded frame is 64x64/],
  ['m-crgb-jpeg-baseline.dcm', /cannot decode JPEG Baseline \(Process 1\) pixel data \(decoded 12288 bytes/],
  ['m-c12-evrle.dcm', /(pixel data holds 8192 bytes, but 1 frame\(s\) of 64x63x1 16-bit samples need 8064|truncated pixel data element: 8192 bytes, need 8320 for one 64x65 frame); transfer syntax Explicit VR Little Endian \(1\.2\.840\.10008\.1\.2\.1\)/],
];

t.test('a header whose size disagrees with the data is an error, never a picture, for every codec', async (t) => {
  for (const [file, reason] of WRONG_SIZE) {
    for (const rows of [63, 65]) {
      const bytes = withRows(file, rows);
      const slice = Buffer.concat([Buffer.alloc(7), bytes]).subarray(7);
      await t.rejects(preprocessImage(slice, { name: file }), { code: 'ERR_IMAGE', message: new RegExp(`^${file.replace(/\./g, '\\.')}: ${reason.source}`) }, `${file}, Rows ${rows}`);
    }
  }
});

t.test('CLI: decode failures are one line each, naming the file, the syntax and the reason, and the batch goes on', async (t) => {
  const { mkdtempSync, writeFileSync, copyFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { cleanEnv, runCli, writeTinyCxrModel } = await import('./helpers/cli.js');
  const work = mkdtempSync(join(tmpdir(), 'cxr-dcm-err-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  await writeTinyCxrModel(join(work, 'model'));
  const scans = join(work, 'scans');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(scans);
  for (const [file] of WRONG_SIZE) writeFileSync(join(scans, `bad-${file}`), withRows(file, 63));
  copyFileSync(join(dir, 'm-c12-rle.dcm'), join(scans, 'good-rle.dcm'));
  copyFileSync(join(dir, 'bad-unsupported-ts.dcm'), join(scans, 'bad-unsupported-ts.dcm'));
  const r = await runCli(['report', scans, '--jsonl', '--model', join(work, 'model'), '--temperature', '0', '--max-tokens', '2', '--threads', '1'], {
    env: cleanEnv(work),
    timeoutMs: 120_000,
  });
  t.equal(r.code, 1, 'exit 1: some inputs failed');
  const errors = r.stderr.split('\n').filter((l) => l.startsWith('error: '));
  t.equal(errors.length, WRONG_SIZE.length + 1, r.stderr);
  for (const line of errors) {
    t.match(line, /^error: \S+\.dcm: /, 'names the file');
    t.match(line, /JPEG|RLE|Explicit VR|Implicit VR/, `names the transfer syntax: ${line}`);
  }
  const recs = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { file: string; error: string | null });
  t.equal(recs.length, WRONG_SIZE.length + 2, 'a record for every file');
  t.equal(recs.find((x) => x.file.endsWith('good-rle.dcm'))?.error, null, 'the good file after the bad ones is reported');
});
