// 12-bit JPEG Extended (1.2.840.10008.1.2.4.51, process 4), decoded by dcmjs-codecs'
// WASM build of IJG libjpeg 6b for 12-bit samples (docs/dicom.md). The golden is dcm2pnm's rendering of dcmtk's
// own decode of the same file (dcmdjpeg), with the VOI recorded in manifest.json:
// the same rule as every other fixture, >= 99.9% of pixels exact and none off by
// more than one level. 8-bit .51 files must stay on cornerstone's libjpeg-turbo.

import t from 'tap';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import sharp from 'sharp';
import type { DicomRenderOptions } from '../lib/inputs/dicom/index.js';
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
const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as {
  fixtures: { name: string; file: string; golden: string; oracle: string; options: DicomRenderOptions; transferSyntax: string }[];
};
const fixture = manifest.fixtures.find((f) => f.name === 'jpeg-extended12')!;

/** Whether dcmjs-codecs has been loaded into this process (tap runs each file in its own). */
const dcmjsLoaded = () => Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes(join('node_modules', 'dcmjs-codecs')));

t.test('an 8-bit .51 file stays on libjpeg-turbo', async (t) => {
  const img = await decodeDicom(read('jpeg-extended8.dcm'), 'jpeg-extended8.dcm');
  t.equal(img.transferSyntax, '1.2.840.10008.1.2.4.51');
  t.equal(img.bitsStored, 8);
  t.notOk(dcmjsLoaded(), 'dcmjs-codecs was not loaded');
});

t.test(`jpeg-extended12 matches ${fixture.oracle} of dcmdjpeg's decode`, async (t) => {
  t.equal(fixture.transferSyntax, '1.2.840.10008.1.2.4.51');
  // dcmjs-codecs turns its own logger fully on at load; a library must print nothing.
  const written: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string | Uint8Array) => (written.push(String(chunk)), true)) as typeof process.stderr.write;
  let img;
  try {
    img = await decodeDicom(read(fixture.file), fixture.file, fixture.options);
  } finally {
    process.stderr.write = write;
  }
  t.same(written, [], 'nothing written to stderr');
  t.ok(dcmjsLoaded(), 'decoded by dcmjs-codecs');
  t.equal(img.transferSyntax, fixture.transferSyntax, 'transfer syntax');
  t.equal(img.bitsStored, 12, 'bits stored');

  const { data: ref, info } = await sharp(readFileSync(join(dir, fixture.golden))).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
  t.equal(img.width, info.width, 'width');
  t.equal(img.height, info.height, 'height');
  t.equal(img.gray8.length, ref.length, 'pixel count');
  let exact = 0;
  let maxDiff = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(img.gray8[i]! - ref[i]!);
    if (d === 0) exact++;
    if (d > maxDiff) maxDiff = d;
  }
  const pct = (100 * exact) / ref.length;
  t.comment(`jpeg-extended12: ${pct.toFixed(3)}% exact, max diff ${maxDiff}`);
  t.ok(pct >= 99.9, `${pct.toFixed(3)}% of pixels exact (>= 99.9%)`);
  t.ok(maxDiff <= 1, `max difference ${maxDiff} (<= 1)`);
  t.ok(new Set(img.gray8).size > 32, 'uses more than 32 gray levels');
});

/** A copy of the 12-bit fixture with `edit` applied to its bytes. */
function edited(edit: (b: Buffer) => void): Uint8Array {
  const b = Buffer.from(read('jpeg-extended12.dcm'));
  edit(b);
  return new Uint8Array(b);
}

t.test('12-bit samples under JPEG Baseline are refused', async (t) => {
  // Same length UID, so the meta header stays valid.
  const bytes = edited((b) => {
    const at = b.indexOf('1.2.840.10008.1.2.4.51');
    t.ok(at > 0 && b.indexOf('1.2.840.10008.1.2.4.51', at + 1) < 0, 'one transfer syntax UID');
    b.write('1.2.840.10008.1.2.4.50', at, 'latin1');
  });
  await t.rejects(decodeDicom(bytes, 'base12.dcm'), {
    name: 'CxrError',
    code: 'ERR_IMAGE',
    message: 'base12.dcm: JPEG Baseline (Process 1) is 8-bit only, but Bits Stored is 12',
  });
});

t.test('a header whose Rows disagree with the JPEG frame is refused', async (t) => {
  const bytes = edited((b) => {
    // (0028,0010) Rows, explicit VR LE: tag(4) "US" length(2) value(2)
    const at = b.indexOf(Buffer.from([0x28, 0x00, 0x10, 0x00, 0x55, 0x53]));
    t.equal(b.readUInt16LE(at + 8), 100, 'found Rows');
    b.writeUInt16LE(99, at + 8);
  });
  await t.rejects(decodeDicom(bytes, 'rows.dcm'), {
    code: 'ERR_IMAGE',
    message: 'rows.dcm: cannot decode JPEG Extended (Process 2 & 4) pixel data (decoded 25600 bytes, but 128x99x1 16-bit samples need 25344)',
  });
});

t.test('a corrupt 12-bit stream gives the decoder error, and the decoder still works after it', async (t) => {
  const bytes = edited((b) => b.fill(0xff, b.length - 3000, b.length - 100));
  await t.rejects(decodeDicom(bytes, 'corrupt.dcm'), {
    code: 'ERR_IMAGE',
    message: /^corrupt\.dcm: cannot decode JPEG Extended \(Process 2 & 4\) pixel data \(JpegDecoder12::ErrorExit::/,
  });
  const img = await decodeDicom(read('jpeg-extended12.dcm'), 'jpeg-extended12.dcm');
  t.equal(img.gray8.length, 128 * 100);
});
