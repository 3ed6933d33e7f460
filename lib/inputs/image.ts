/**
 * Image input for the vision tower: decoding (sharp) and CXR-LLaVA's official
 * preprocessing (native, bit-exact with PIL).
 *
 * The official pipeline is `convert('L')` -> resize the shortest edge to 512 with
 * `Image.LANCZOS` -> centre crop 512x512 -> `/255` -> `(x - mean)/std`. sharp only
 * decodes here, to the file's own 8-bit values (no ICC or colourspace transform);
 * the luma, the resampling and the crop run in native/engine/image/image.cpp.
 *
 * ```ts
 * const pixels = await preprocessImage('chest.png'); // Float32Array(512 * 512)
 * ```
 */
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';

import { CxrError, invalidParameterError } from '../errors.js';
import { native } from '../runtime/native.js';
import { isBareDataSet } from './dicom/detect.js';
import { limits } from '../runtime/limits.js';

/** Side of the square image the vision tower takes. */
export const IMAGE_SIZE = 512;
/** Normalisation mean of the CXR-LLaVA release (a model GGUF may carry its own). */
export const OFFICIAL_MEAN = 0.5518136078431373;
/** Normalisation standard deviation of the CXR-LLaVA release. */
export const OFFICIAL_STD = 0.3821719215686275;
/** Largest decoded image accepted, in pixels, against decompression bombs: the engine's limit (runtime/limits.ts). */
function maxInputPixels(): number {
  return limits().maxImagePixels;
}
/** Encoded formats accepted, as they appear in error messages. */
export const SUPPORTED_FORMATS = ['PNG', 'JPEG', 'TIFF', 'WebP'] as const;

/** Decoded 8-bit pixels, interleaved, rows top to bottom. */
export interface RawPixels {
  /** width * height * channels bytes */
  data: Uint8Array;
  width: number;
  height: number;
  /** 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA (alpha is ignored, as PIL's convert('L') ignores it) */
  channels: 1 | 2 | 3 | 4;
}

/** A file path, the bytes of an encoded file, or decoded pixels. */
export type ImageInput = string | Buffer | Uint8Array | RawPixels;

export interface DecodeOptions {
  /** Name used in error messages (optional, default the path, or "<buffer>" / "<pixels>") */
  name?: string;
  /**
   * Display window for DICOM and 16-bit PNG/TIFF, instead of the file's own VOI
   * or the data range (optional). See docs/dicom.md.
   */
  window?: { center: number; width: number };
  /** Which of a DICOM file's VOI LUTs or windows to use, 1-based (optional, default 1). */
  voi?: number;
}

export interface PreprocessOptions extends DecodeOptions {
  /** Output side in pixels (optional, default 512) */
  size?: number;
  /** Normalisation mean (optional, default OFFICIAL_MEAN) */
  mean?: number;
  /** Normalisation standard deviation (optional, default OFFICIAL_STD) */
  std?: number;
}

/** An image decoded to 8-bit pixels, not yet converted to grey. */
export interface DecodedImage extends RawPixels {
  /** The path or name that error messages use. */
  source: string;
  /** Things worth knowing that did not stop decoding (e.g. from a DICOM reader). */
  warnings: string[];
  /** A DICOM file's SOP Instance UID, to join results back (never patient identifiers). */
  sopInstanceUid?: string;
}

/** An 8-bit grey image (PIL mode 'L'). */
export interface Gray8Image {
  data: Uint8Array;
  width: number;
  height: number;
  source: string;
  warnings: string[];
  sopInstanceUid?: string;
}

const FORMAT_LIST = 'PNG, JPEG, TIFF and WebP';
/** sharp's format names for SUPPORTED_FORMATS. */
const SHARP_FORMATS: Record<string, string> = { png: 'PNG', jpeg: 'JPEG', tiff: 'TIFF', webp: 'WebP' };

function imageError(source: string, what: string, cause?: unknown): CxrError {
  return new CxrError('ERR_IMAGE', `${source}: ${what}`, cause === undefined ? undefined : { cause });
}

/** The format by its signature, for the formats we accept (so a damaged file is called damaged, not unknown). */
function sniffFormat(b: Uint8Array): string | undefined {
  const at = (off: number, bytes: number[]) => bytes.every((v, i) => b[off + i] === v);
  if (at(0, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'PNG';
  if (at(0, [0xff, 0xd8, 0xff])) return 'JPEG';
  if (at(0, [0x49, 0x49, 0x2a, 0x00]) || at(0, [0x4d, 0x4d, 0x00, 0x2a])) return 'TIFF';
  if (at(0, [0x52, 0x49, 0x46, 0x46]) && at(8, [0x57, 0x45, 0x42, 0x50])) return 'WebP';
  return undefined;
}

/** DICOM Part 10 files carry "DICM" after a 128-byte preamble; old exports are a bare data set. */
function looksLikeDicom(b: Uint8Array): boolean {
  return (b.length >= 132 && b[128] === 0x44 && b[129] === 0x49 && b[130] === 0x43 && b[131] === 0x4d) || isBareDataSet(b);
}

/**
 * The one place DICOM input is routed: lib/inputs/dicom renders it to 8-bit gray as a
 * viewer would (modality LUT, VOI, MONOCHROME1), and the result goes on as a
 * 1-channel image through the same native preprocessing as a PNG.
 */
async function decodeDicomBytes(bytes: Uint8Array, source: string, options: DecodeOptions): Promise<DecodedImage> {
  const { decodeDicom } = await import('./dicom/index.js');
  const g = await decodeDicom(bytes, source, {
    ...(options.window ? { window: options.window } : {}),
    ...(options.voi !== undefined ? { voi: options.voi } : {}),
  });
  return {
    data: g.gray8,
    width: g.width,
    height: g.height,
    channels: 1,
    source,
    warnings: g.warnings,
    ...(g.sopInstanceUid ? { sopInstanceUid: g.sopInstanceUid } : {}),
  };
}

/** 16-bit PNG/TIFF mapped to 8 bits by the data-range (or given) window; undefined for 8-bit files. */
async function decodeHighBitBytes(bytes: Uint8Array, source: string, options: DecodeOptions): Promise<DecodedImage | undefined> {
  const { decodeHighBit } = await import('./highbit.js');
  const g = await decodeHighBit(bytes, source, options.window ? { window: options.window } : {});
  if (!g) return undefined;
  return { data: g.gray8, width: g.width, height: g.height, channels: 1, source, warnings: g.warnings };
}

function isRawPixels(input: unknown): input is RawPixels {
  return typeof input === 'object' && input !== null && !(input instanceof Uint8Array) && 'data' in input;
}

function checkRawPixels(p: RawPixels, source: string): void {
  const int = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v > 0;
  if (!(p.data instanceof Uint8Array)) throw invalidParameterError('data', 'a Uint8Array', p.data);
  if (!int(p.width)) throw invalidParameterError('width', 'positive integer', p.width);
  if (!int(p.height)) throw invalidParameterError('height', 'positive integer', p.height);
  if (!(p.channels === 1 || p.channels === 2 || p.channels === 3 || p.channels === 4))
    throw invalidParameterError('channels', '1, 2, 3 or 4', p.channels);
  if (p.width * p.height > maxInputPixels()) throw tooLarge(source, p.width, p.height);
  const expected = p.width * p.height * p.channels;
  if (p.data.length !== expected)
    throw imageError(source, `pixel data has ${p.data.length} bytes, expected ${p.width}x${p.height}x${p.channels} = ${expected}`);
}

function tooLarge(source: string, width: number, height: number): CxrError {
  return imageError(source, `the image is ${width}x${height} pixels, more than the limit of ${maxInputPixels()} pixels`);
}

async function readImageFile(path: string): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'file not found' : code === 'EISDIR' ? 'is a directory' : `cannot read the file (${code ?? String(err)})`;
    throw imageError(path, why, err);
  }
}

/** Decodes PNG/JPEG/TIFF/WebP to the file's own 8-bit values: no ICC transform, no gamma, no orientation. */
async function decodeWithSharp(bytes: Uint8Array, source: string): Promise<DecodedImage> {
  const sniffed = sniffFormat(bytes);
  let meta: sharp.Metadata;
  try {
    // Reading the header decodes no pixels, so no pixel limit here: the size is
    // checked below, with a message that says what the limit is.
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (err) {
    if (sniffed) throw imageError(source, `the ${sniffed} data is truncated or corrupt`, err);
    throw imageError(source, `not a supported image (supported formats: ${FORMAT_LIST})`, err);
  }
  const format = SHARP_FORMATS[meta.format ?? ''];
  if (!format) {
    const name = (meta.format ?? 'unknown').toUpperCase();
    throw imageError(source, `${name} images are not supported (supported formats: ${FORMAT_LIST})`);
  }
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  if (width * height > maxInputPixels()) throw tooLarge(source, width, height);
  if (meta.depth === 'ushort' || meta.depth === 'short') throw imageError(source, '16-bit images are not supported yet');
  if (meta.depth !== 'uchar') throw imageError(source, `${meta.depth ?? 'unknown'} samples are not supported; only 8-bit images are`);
  if (meta.space !== 'srgb' && meta.space !== 'b-w')
    throw imageError(source, `${(meta.space ?? 'unknown').toUpperCase()} images are not supported; only greyscale and RGB are`);

  // ignoreIcc: PIL applies no colour management, so neither may we. Grey stays
  // one channel (sharp would otherwise expand it to sRGB; 'b-w' also drops an
  // alpha channel, which convert('L') ignores anyway). Colour images stay RGB(A)
  // so the luma is computed natively, in PIL's arithmetic.
  let pipeline = sharp(bytes, { failOn: 'error', limitInputPixels: maxInputPixels(), ignoreIcc: true });
  if (meta.space === 'b-w') pipeline = pipeline.toColourspace('b-w');
  let out: { data: Buffer; info: sharp.OutputInfo };
  try {
    out = await pipeline.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (err) {
    if (/pixel limit/i.test((err as Error).message)) throw tooLarge(source, width, height);
    throw imageError(source, `the ${format} data is truncated or corrupt`, err);
  }
  const { data, info } = out;
  if (info.channels < 1 || info.channels > 4 || data.length !== info.width * info.height * info.channels)
    throw imageError(source, `the decoder returned an unexpected ${info.width}x${info.height}x${info.channels} image`);
  return {
    data: new Uint8Array(data.buffer, data.byteOffset, data.length),
    width: info.width,
    height: info.height,
    channels: info.channels as 1 | 2 | 3 | 4,
    source,
    warnings: [],
  };
}

/**
 * Decodes an image to 8-bit pixels. Paths and bytes are recognised by content:
 * PNG, JPEG, TIFF and WebP through sharp, DICOM (once supported) through lib/inputs/dicom.
 * Raw pixels are checked and passed through. Every failure is a `CxrError` with
 * code `ERR_IMAGE` whose message starts with the file's name.
 */
export async function decodeImage(input: ImageInput, options: DecodeOptions = {}): Promise<DecodedImage> {
  if (options.name !== undefined && typeof options.name !== 'string')
    throw invalidParameterError('name', 'a string', options.name);
  if (isRawPixels(input)) {
    const source = options.name ?? '<pixels>';
    checkRawPixels(input, source);
    return { ...input, source, warnings: [] };
  }
  let bytes: Uint8Array;
  let source: string;
  if (typeof input === 'string') {
    source = options.name ?? input;
    bytes = await readImageFile(input);
  } else if (input instanceof Uint8Array) {
    source = options.name ?? '<buffer>';
    bytes = input;
  } else {
    throw invalidParameterError('image', 'a file path, a Buffer/Uint8Array or { data, width, height, channels }', input);
  }
  if (bytes.length === 0) throw imageError(source, 'the file is empty');
  if (looksLikeDicom(bytes)) return decodeDicomBytes(bytes, source, options);
  const format = sniffFormat(bytes);
  if (format === 'PNG' || format === 'TIFF') {
    const high = await decodeHighBitBytes(bytes, source, options);
    if (high) return high;
  }
  return decodeWithSharp(bytes, source);
}

/** Native failures (e.g. an aspect ratio too extreme to resize) as ERR_IMAGE naming the source. */
function fromNativeImage(err: unknown, source: string): CxrError {
  const e = err as { code?: unknown; message?: unknown };
  if (e?.code === 'ERR_NO_MEMORY') return new CxrError('ERR_NO_MEMORY', `${source}: ${String(e.message)}`, { cause: err });
  return imageError(source, typeof e?.message === 'string' ? e.message : String(err), err);
}

function checkSize(size: unknown): number {
  if (size === undefined) return IMAGE_SIZE;
  if (typeof size !== 'number' || !Number.isInteger(size) || size < 1 || size > 8192)
    throw invalidParameterError('size', 'integer between 1 and 8192', size);
  return size;
}

/** Decodes and converts to grey exactly as PIL's `convert('L')` (ITU-R 601 luma, fixed point). */
export async function loadGray8(input: ImageInput, options: DecodeOptions = {}): Promise<Gray8Image> {
  const img = await decodeImage(input, options);
  const { source, warnings, width, height } = img;
  const uid = img.sopInstanceUid ? { sopInstanceUid: img.sopInstanceUid } : {};
  if (img.channels === 1) return { data: img.data, width, height, source, warnings, ...uid };
  try {
    const data = await native().luma(img);
    return { data, width, height, source, warnings, ...uid };
  } catch (err) {
    throw fromNativeImage(err, source);
  }
}

/**
 * The official preprocessing up to the crop: grey, shortest edge to `size`
 * (Lanczos, as PIL), centre `size` x `size`. Returns size*size bytes, row-major.
 */
export async function preprocessImageGray8(input: ImageInput, options: PreprocessOptions = {}): Promise<Uint8Array> {
  const size = checkSize(options.size);
  const img = await decodeImage(input, options);
  try {
    return await native().preprocessGray8({ ...img, size });
  } catch (err) {
    throw fromNativeImage(err, img.source);
  }
}

/**
 * CXR-LLaVA's official image preprocessing: size*size floats, row-major, one
 * channel, `(gray/255 - mean)/std`. Pass the mean and std from the model when
 * it has them.
 */
export async function preprocessImage(input: ImageInput, options: PreprocessOptions = {}): Promise<Float32Array> {
  return (await preprocessImageDetailed(input, options)).pixels;
}

/** preprocessImage() plus what decoding learnt: the source name, warnings and a DICOM's SOP Instance UID. */
export async function preprocessImageDetailed(
  input: ImageInput,
  options: PreprocessOptions = {},
): Promise<{ pixels: Float32Array; source: string; warnings: string[]; sopInstanceUid?: string }> {
  const size = checkSize(options.size);
  const mean = options.mean ?? OFFICIAL_MEAN;
  const std = options.std ?? OFFICIAL_STD;
  if (typeof mean !== 'number' || !Number.isFinite(mean)) throw invalidParameterError('mean', 'finite number', mean);
  if (typeof std !== 'number' || !Number.isFinite(std) || std <= 0) throw invalidParameterError('std', 'positive number', std);
  const img = await decodeImage(input, options);
  try {
    const pixels = await native().preprocess({ ...img, size, mean, std });
    return { pixels, source: img.source, warnings: img.warnings, ...(img.sopInstanceUid ? { sopInstanceUid: img.sopInstanceUid } : {}) };
  } catch (err) {
    throw fromNativeImage(err, img.source);
  }
}

