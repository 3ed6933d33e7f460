// The official CXR-LLaVA image preprocessing against PIL: goldens written by
// tools/reference/make_image_goldens.py (Pillow 9.4 convert('L') -> LANCZOS resize
// of the shortest edge to 512 -> centre crop), the normalisation, the input
// kinds (path, Buffer, raw pixels) and every kind of bad input.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync, crc32 } from 'node:zlib';
import sharp from 'sharp';
import t from 'tap';

import {
  IMAGE_SIZE,
  OFFICIAL_MEAN,
  OFFICIAL_STD,
  decodeImage,
  loadGray8,
  preprocessImage,
  preprocessImageGray8,
  type RawPixels,
} from '../lib/inputs/image.js';

const dir = new URL('./fixtures/images/', import.meta.url).pathname;
interface Golden {
  file: string;
  golden: string;
  width: number;
  height: number;
  mode: string;
  resized: [number, number];
  crop: [number, number];
  samples: { x: number; y: number; u8: number; value: number }[];
}
const goldens = JSON.parse(await readFile(join(dir, 'goldens.json'), 'utf8')) as {
  size: number;
  mean: number;
  std: number;
  images: Golden[];
};

/** A lossless golden PNG as its grey bytes (sharp keeps 1-channel PNGs as they are). */
async function readGoldenPng(file: string): Promise<Uint8Array> {
  const { data, info } = await sharp(join(dir, file)).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 1 || info.width !== IMAGE_SIZE || info.height !== IMAGE_SIZE) throw new Error(`bad golden ${file}`);
  return new Uint8Array(data);
}

function compare(ours: Uint8Array, ref: Uint8Array): { exact: number; maxDiff: number } {
  let same = 0;
  let maxDiff = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(ours[i]! - ref[i]!);
    if (d === 0) same++;
    if (d > maxDiff) maxDiff = d;
  }
  return { exact: same / ref.length, maxDiff };
}

/** Index of the first element that differs (or the length that does), -1 when equal. tap's t.same is slow on 262144 elements. */
function firstDifference(a: Float32Array | Uint8Array, b: Float32Array | Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
}

t.test('constants are the official ones', async (t) => {
  t.equal(IMAGE_SIZE, goldens.size);
  t.equal(OFFICIAL_MEAN, goldens.mean);
  t.equal(OFFICIAL_STD, goldens.std);
});

for (const g of goldens.images) {
  t.test(`${g.file} (${g.width}x${g.height} ${g.mode}) matches PIL`, async (t) => {
    const ref = await readGoldenPng(g.golden);
    const ours = await preprocessImageGray8(join(dir, g.file));
    t.equal(ours.length, IMAGE_SIZE * IMAGE_SIZE);
    const { exact, maxDiff } = compare(ours, ref);
    const figures = `${(exact * 100).toFixed(4)}% of pixels exact, max diff ${maxDiff}`;
    t.comment(`${g.file}: ${figures}`);
    t.ok(exact >= 0.999, `at least 99.9% exact: ${figures}`);
    t.ok(maxDiff <= 1, `every pixel within one grey level: ${figures}`);
    for (const s of g.samples) t.equal(ref[s.y * IMAGE_SIZE + s.x], s.u8, `golden PNG agrees with goldens.json at (${s.x}, ${s.y})`);

    // Normalised output: exactly (u8/255 - mean)/std of our own crop, and the
    // reference values at the sampled positions.
    const norm = await preprocessImage(join(dir, g.file));
    t.equal(norm.length, IMAGE_SIZE * IMAGE_SIZE);
    let worst = 0;
    for (let i = 0; i < ours.length; i++)
      worst = Math.max(worst, Math.abs(norm[i]! - (ours[i]! / 255 - OFFICIAL_MEAN) / OFFICIAL_STD));
    t.ok(worst <= 1e-6, `normalised = (u8/255 - mean)/std everywhere (worst |diff| ${worst})`);
    for (const s of g.samples) {
      const i = s.y * IMAGE_SIZE + s.x;
      if (ours[i] === s.u8) t.ok(Math.abs(norm[i]! - s.value) <= 1e-6, `value at (${s.x}, ${s.y}): ${norm[i]} vs ${s.value}`);
    }
  });
}

t.test('a Buffer, raw pixels and a path give the same result', async (t) => {
  for (const file of ['rgb-color.png', 'portrait.png', 'rgba.png']) {
    const path = join(dir, file);
    const fromPath = await preprocessImage(path);
    const bytes = await readFile(path);
    t.equal(firstDifference(await preprocessImage(bytes), fromPath), -1, `${file} as a Buffer`);
    t.equal(firstDifference(await preprocessImage(new Uint8Array(bytes)), fromPath), -1, `${file} as a Uint8Array`);
    const decoded = await decodeImage(path);
    const raw: RawPixels = { data: decoded.data, width: decoded.width, height: decoded.height, channels: decoded.channels };
    t.equal(firstDifference(await preprocessImage(raw), fromPath), -1, `${file} as raw pixels`);
  }
});

t.test('grey, grey+alpha and RGB with equal channels are the same image', async (t) => {
  const grey = await decodeImage(join(dir, 'portrait.png'));
  t.equal(grey.channels, 1);
  const n = grey.width * grey.height;
  const la = new Uint8Array(n * 2);
  const rgb = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const v = grey.data[i]!;
    la[2 * i] = v;
    la[2 * i + 1] = (i * 37) & 255; // alpha, which convert('L') ignores
    rgb.fill(v, 3 * i, 3 * i + 3);
  }
  const expected = await preprocessImageGray8(join(dir, 'portrait.png'));
  const dims = { width: grey.width, height: grey.height };
  t.equal(firstDifference(await preprocessImageGray8({ data: la, ...dims, channels: 2 }), expected), -1, 'LA');
  t.equal(firstDifference(await preprocessImageGray8({ data: rgb, ...dims, channels: 3 }), expected), -1, 'RGB with R = G = B');
});

t.test('loadGray8 applies PIL luma to colour images', async (t) => {
  const img = await loadGray8(join(dir, 'rgb-color.png'));
  const { data, info } = await sharp(join(dir, 'rgb-color.png')).raw().toBuffer({ resolveWithObject: true });
  t.equal(info.channels, 3);
  t.equal(img.width, info.width);
  let mismatches = 0;
  for (let i = 0; i < img.width * img.height; i++) {
    const L = (data[3 * i]! * 19595 + data[3 * i + 1]! * 38470 + data[3 * i + 2]! * 7471 + 0x8000) >>> 16;
    if (img.data[i] !== L) mismatches++;
  }
  t.equal(mismatches, 0, 'L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16 at every pixel');
  t.equal(img.source, join(dir, 'rgb-color.png'));
});

t.test('an embedded ICC profile is ignored, as PIL ignores it', async (t) => {
  const width = 64;
  const height = 48;
  const px = Buffer.alloc(width * height * 3);
  for (let i = 0; i < px.length; i++) px[i] = (i * 73 + (i >> 7) * 11) & 255;
  const raw = { raw: { width, height, channels: 3 as const } };
  const plain = await sharp(px, raw).png().toBuffer();
  // sharp converts pixels into a profile it attaches, so take its iCCP chunk
  // and splice it into the plain file, after IHDR: same pixels, plus a profile.
  const tagged = await sharp(px, raw).withIccProfile('p3').png().toBuffer();
  const at = tagged.indexOf('iCCP') - 4;
  const iccp = tagged.subarray(at, at + 12 + tagged.readUInt32BE(at));
  const withIcc = Buffer.concat([plain.subarray(0, 33), iccp, plain.subarray(33)]);
  t.ok((await sharp(withIcc).metadata()).icc, 'the test image carries a profile');
  const converted = await sharp(withIcc).raw().toBuffer();
  t.not(firstDifference(converted, px), -1, 'sharp by default would transform these pixels');
  const expected = (await loadGray8(plain)).data;
  t.equal(firstDifference((await loadGray8(withIcc)).data, expected), -1, 'same grey values as without the profile');
});

t.test('mean, std and size options', async (t) => {
  const path = join(dir, 'square.png');
  const u8 = await preprocessImageGray8(path);
  const plain = await preprocessImage(path, { mean: 0, std: 1 });
  let worst = 0;
  for (let i = 0; i < u8.length; i++) worst = Math.max(worst, Math.abs(plain[i]! - u8[i]! / 255));
  t.ok(worst <= 1e-7, `mean 0, std 1 gives u8/255 (worst ${worst})`);
  t.equal((await preprocessImage(path, { size: 224 })).length, 224 * 224);
  await t.rejects(preprocessImage(path, { std: 0 }), { code: 'ERR_INVALID_ARG', message: 'Expected positive number for std but received 0' });
  await t.rejects(preprocessImage(path, { size: 1.5 }), { code: 'ERR_INVALID_ARG' });
});

// ---- bad input -------------------------------------------------------------------------

/** Unfiltered PNG scanlines: each row is a 0 filter byte and `rowBytes` bytes of `value`. */
function rows(rowBytes: number, height: number, value: number): Buffer {
  const b = Buffer.alloc((1 + rowBytes) * height, value);
  for (let y = 0; y < height; y++) b[y * (1 + rowBytes)] = 0;
  return b;
}

/** A PNG file from raw scanlines. */
function png(width: number, height: number, bitDepth: number, colourType: number, scanlines: Buffer): Buffer {
  const chunk = (type: string, body: Buffer) => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(body.length, 0);
    head.write(type, 4, 'latin1');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), body])) >>> 0, 0);
    return Buffer.concat([head, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = bitDepth;
  ihdr[9] = colourType;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(scanlines, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const supported = '(supported formats: PNG, JPEG, TIFF and WebP)';

t.test('bad input gives a clear ERR_IMAGE naming the file', async (t) => {
  const tmp = await mkdtemp(join(tmpdir(), 'cxr-image-'));
  t.teardown(() => rm(tmp, { recursive: true, force: true }));
  const expectError = async (input: Parameters<typeof preprocessImage>[0], message: string, name?: string) =>
    t.rejects(preprocessImage(input, name === undefined ? {} : { name }), { name: 'CxrError', code: 'ERR_IMAGE', message }, message);

  await expectError(Buffer.from('this is a text file, not an image'), `<buffer>: not a supported image ${supported}`);
  await expectError(Buffer.alloc(0), '<buffer>: the file is empty');
  const empty = join(tmp, 'empty.png');
  await writeFile(empty, Buffer.alloc(0));
  await expectError(empty, `${empty}: the file is empty`);
  const missing = join(tmp, 'missing.png');
  await expectError(missing, `${missing}: file not found`);

  const pngBytes = await readFile(join(dir, 'portrait.png'));
  await expectError(pngBytes.subarray(0, pngBytes.length >> 1), 'half.png: the PNG data is truncated or corrupt', 'half.png');
  await expectError(pngBytes.subarray(0, 40), '<buffer>: the PNG data is truncated or corrupt');
  const jpegBytes = await readFile(join(dir, 'gray-jpeg.jpg'));
  const halfJpeg = join(tmp, 'half.jpg');
  await writeFile(halfJpeg, jpegBytes.subarray(0, jpegBytes.length >> 1));
  await expectError(halfJpeg, `${halfJpeg}: the JPEG data is truncated or corrupt`);

  // A real, valid 30000x30000 1-bit PNG of ~100 kB that would decode to 900 Mpixels.
  const bomb = png(30000, 30000, 1, 0, rows(Math.ceil(30000 / 8), 30000, 0));
  t.ok(bomb.length < 200_000, `the bomb is small (${bomb.length} bytes)`);
  await expectError(bomb, 'bomb.png: the image is 30000x30000 pixels, more than the limit of 100000000 pixels', 'bomb.png');

  // 16-bit PNGs are accepted now (lib/inputs/highbit.ts maps them by their data range;
  // checked against dcmtk in test/dicom-highbit.test.ts): a constant image stays constant.
  const sixteen = await preprocessImageGray8(png(4, 3, 16, 0, rows(8, 3, 7)), { size: 4 });
  t.ok(sixteen.every((v) => v === sixteen[0]), 'a constant 16-bit image stays constant');
  t.equal((await preprocessImageGray8(png(4, 3, 8, 0, rows(4, 3, 9)))).every((v) => v === 9), true);

  await expectError(join(dir, 'animated.gif'), `${join(dir, 'animated.gif')}: GIF images are not supported ${supported}`);
  const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>');
  await expectError(svg, `scan.svg: SVG images are not supported ${supported}`, 'scan.svg');
  const bmp = Buffer.concat([Buffer.from('BM'), Buffer.alloc(60)]);
  await expectError(bmp, `<buffer>: not a supported image ${supported}`);
  await expectError(join(dir, 'cmyk.jpg'), `${join(dir, 'cmyk.jpg')}: CMYK images are not supported; only greyscale and RGB are`);

  const dicom = Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), Buffer.alloc(64)]);
  // A DICOM preamble routes to the DICOM reader, which names what is missing.
  await expectError(dicom, '<buffer>: not a readable DICOM file (dicomParser.parseDicom: missing required meta header attribute 0002,0010)');
  await expectError(dicom, 'study.dcm: not a readable DICOM file (dicomParser.parseDicom: missing required meta header attribute 0002,0010)', 'study.dcm');

  await expectError({ data: new Uint8Array(10), width: 4, height: 4, channels: 1 }, '<pixels>: pixel data has 10 bytes, expected 4x4x1 = 16');
  await expectError(
    { data: new Uint8Array(3), width: 1, height: 1_000_000_000, channels: 1 },
    '<pixels>: the image is 1x1000000000 pixels, more than the limit of 100000000 pixels',
  );
  await t.rejects(preprocessImage({ data: new Uint8Array(4), width: 2, height: 2, channels: 5 as 1 }), {
    code: 'ERR_INVALID_ARG',
    message: 'Expected 1, 2, 3 or 4 for channels but received 5',
  });
  await t.rejects(preprocessImage(42 as unknown as string), { code: 'ERR_INVALID_ARG' });
});

t.test('extreme aspect ratios are handled without a huge intermediate', async (t) => {
  // PIL would resize this strip to 512x1024000; only the kept centre is computed.
  const strip = { data: new Uint8Array(2000).fill(90), width: 1, height: 2000, channels: 1 as const };
  const out = await preprocessImageGray8(strip);
  t.equal(out.length, IMAGE_SIZE * IMAGE_SIZE);
  t.ok(out.every((v) => v === 90), 'a flat strip stays flat');
});
