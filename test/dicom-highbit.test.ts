// 16-bit PNG/TIFF -> 8 bits by the data-range window, checked against dcm2pnm +Wm
// on the same 16-bit data stored as DICOM; and "same image, two containers": an
// 8-bit radiograph as lossless DICOM and as PNG gives identical gray8 output.

import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { decodeHighBit } from '../lib/inputs/highbit.js';
import { loadGray8 } from '../lib/index.js';
import { decodeDicom as innerDecode } from '../lib/inputs/dicom/index.js';

const dir = join(import.meta.dirname, 'fixtures', 'dicom');
const read = (file: string) => new Uint8Array(readFileSync(join(dir, file)));
/** The public entry point with bytes as a Buffer at an offset in a larger block, named as the CLI names a file. */
const decodeDicom = async (bytes: Uint8Array, name: string, opts: object = {}) => {
  const block = Buffer.alloc(bytes.length + 64);
  block.set(bytes, 33);
  const img = await loadGray8(block.subarray(33, 33 + bytes.length), { name, ...opts });
  // What only the inner decoder reports (the syntax read, Bits Stored), from the same bytes.
  const { transferSyntax, bitsStored } = await innerDecode(bytes, name, opts);
  return { ...img, gray8: img.data, transferSyntax, bitsStored };
};
const gray = async (file: string) => (await sharp(readFileSync(join(dir, file))).extractChannel(0).raw().toBuffer());

const cases: [string, string, { window?: { center: number; width: number } }][] = [
  ['hb16.png', 'hb16.golden.png', {}],
  ['hb16.tif', 'hb16.golden.png', {}],
  ['hb12.png', 'hb12.golden.png', {}],
  ['hb16.png', 'hb16-window.golden.png', { window: { center: 30000, width: 20000 } }],
];

for (const [file, goldenFile, opts] of cases) {
  t.test(`${file} ${opts.window ? 'with a window' : 'data range'} matches dcm2pnm`, async (t) => {
    const img = await decodeHighBit(read(file), file, opts);
    if (!img) throw new Error('expected a 16-bit image');
    const ref = await gray(goldenFile);
    t.equal(img.width, 128);
    t.equal(img.height, 100);
    let exact = 0;
    let maxDiff = 0;
    for (let i = 0; i < ref.length; i++) {
      const d = Math.abs(img.gray8[i]! - ref[i]!);
      if (d === 0) exact++;
      maxDiff = Math.max(maxDiff, d);
    }
    const pct = (100 * exact) / ref.length;
    t.comment(`${file}: ${pct.toFixed(3)}% exact, max diff ${maxDiff}`);
    t.ok(pct >= 99.9, `${pct.toFixed(3)}% exact`);
    t.ok(maxDiff <= 1, `max diff ${maxDiff}`);
    if (!opts.window) {
      t.equal(Math.min(...img.gray8), 0, 'data minimum maps to 0');
      t.equal(Math.max(...img.gray8), 255, 'data maximum maps to 255');
    }
  });
}

t.test('8-bit files and non-images are not high-bit images', async (t) => {
  t.equal(await decodeHighBit(read('same8.png'), 'same8.png'), null);
  t.equal(await decodeHighBit(read('ivrle.dcm'), 'ivrle.dcm'), null);
  t.equal(await decodeHighBit(new Uint8Array([1, 2, 3]), 'x.bin'), null);
});

t.test('same image, two containers: lossless DICOM and PNG give identical gray8', async (t) => {
  const fromDicom = await decodeDicom(read('same8.dcm'), 'same8.dcm');
  t.equal(fromDicom.transferSyntax, '1.2.840.10008.1.2.4.80', 'the DICOM copy is JPEG-LS lossless');
  const png = await gray('same8.png');
  t.equal(fromDicom.width, 128);
  t.equal(fromDicom.height, 100);
  t.ok(Buffer.from(fromDicom.gray8).equals(png), 'byte-identical');
  t.ok(new Set(png).size > 32, 'a real picture, not a flat one');
});
