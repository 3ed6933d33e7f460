// Bad DICOM input: each case is a CxrError ERR_IMAGE whose message names the
// file and the reason; and a batch of files goes on past the bad ones.
// (12-bit JPEG is decoded now: its tests and its bad cases are in dicom-jpeg12.test.ts.)

import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CxrError } from '../lib/errors.js';
import { decodeDicom, isDicom } from '../lib/inputs/dicom/index.js';

const dir = join(import.meta.dirname, 'fixtures', 'dicom');
const read = (file: string) => new Uint8Array(readFileSync(join(dir, file)));

const cases: [string, string][] = [
  ['bad-sr-no-pixels.dcm', 'bad-sr-no-pixels.dcm: no pixel data in this DICOM file (modality SR); it is not an image'],
  ['bad-truncated.dcm', 'bad-truncated.dcm: truncated pixel data element: 20600 of 25600 bytes present'],
  ['bad-unsupported-ts.dcm', 'bad-unsupported-ts.dcm: unsupported transfer syntax JPEG 2000 Part 2 Multi-component (Lossless Only) (1.2.840.10008.1.2.4.92)'],
  ['bad-huge.dcm', 'bad-huge.dcm: image size 65535x65535 is beyond the limit (32768 per side, 268435456 pixels)'],
];

for (const [file, message] of cases) {
  t.test(file, async (t) => {
    await t.rejects(decodeDicom(read(file), file), { name: 'CxrError', code: 'ERR_IMAGE', message });
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
  await t.rejects(decodeDicom(bytes, 'ivrle.dcm', { voi: 0 }), { code: 'ERR_INVALID_ARG', message: 'Expected positive integer for voi but received 0 of type number' });
  await t.rejects(decodeDicom(bytes, 'ivrle.dcm', { window: { center: 10, width: 0 } }), {
    code: 'ERR_INVALID_ARG',
    message: 'Expected number >= 1 for window.width but received 0 of type number',
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
