/**
 * Gets the first frame's samples out of the pixel data element. No codec is
 * written here: compressed frames go to the npm decoders chosen in docs/dicom.md
 * (cornerstone's WASM builds of libjpeg-turbo, CharLS and OpenJPEG, cornerstone's
 * JPEG lossless decoder, and dcmjs-codecs' WASM IJG libjpeg 6b for 12-bit and colour
 * JPEG and its RLE decoder). Each loader is created once. What is done by hand here
 * is the bookkeeping around them: finding frame 1 among the fragments, byte order,
 * YBR_FULL_422 pairs and the JPEG colour rule, each to match dcmtk.
 */

import { createRequire } from 'node:module';
import { dicomError, type DicomHeader } from './parse.js';

const require = createRequire(import.meta.url);

/** Samples of one frame, as unsigned bit patterns (masking and sign come later). */
export interface FrameSamples {
  /** Interleaved samples: `width*height*channels` values. */
  samples: ArrayLike<number>;
  /** 1 (gray) or 3 (colour). */
  channels: number;
  /** Bit position of the lowest stored bit (High Bit - Bits Stored + 1); 0 for decoded frames. */
  shift: number;
  /**
   * What three channels hold: RGB, or YBR_FULL still to be converted the way dcmtk
   * converts uncompressed YBR (native, RLE and JPEG-LS frames keep the file's YBR).
   */
  colour?: 'RGB' | 'YBR_FULL';
  /** Bits to keep of each sample, when the decoder's output is wider than the header's Bits Stored. */
  bitsStored?: number;
}

// ---- the WASM decoders (emscripten modules with the same small API) -------------------

interface FrameInfo {
  width: number;
  height: number;
  bitsPerSample: number;
  componentCount: number;
  isSigned?: boolean;
}
interface WasmDecoder {
  getEncodedBuffer(length: number): Uint8Array;
  getDecodedBuffer(): Uint8Array;
  decode(): void;
  getFrameInfo(): FrameInfo;
  delete?(): void;
}
type WasmModule = Record<string, new () => WasmDecoder>;
type WasmFactory = (opts?: object) => Promise<WasmModule>;

const modules = new Map<string, Promise<WasmModule>>();
function wasm(pkg: string): Promise<WasmModule> {
  let m = modules.get(pkg);
  if (!m) {
    const factory = require(pkg) as WasmFactory;
    // OpenJPEG prints "[INFO] ..." lines through print(); keep the process's stdout clean.
    m = factory({ print: () => {}, printErr: () => {} });
    modules.set(pkg, m);
  }
  return m;
}

async function runWasm(pkg: string, cls: string, frame: Uint8Array): Promise<{ info: FrameInfo; samples: ArrayLike<number> }> {
  const mod = await wasm(pkg);
  const Ctor = mod[cls];
  if (!Ctor) throw new Error(`${pkg} has no ${cls}`);
  const dec = new Ctor();
  try {
    dec.getEncodedBuffer(frame.length).set(frame);
    dec.decode();
    const info = dec.getFrameInfo();
    const out = dec.getDecodedBuffer(); // a view of WASM memory: copy before the next call
    const samples =
      info.bitsPerSample > 8
        ? new Uint16Array(out.buffer.slice(out.byteOffset, out.byteOffset + (out.byteLength & ~1)))
        : new Uint8Array(out);
    return { info, samples };
  } finally {
    dec.delete?.();
  }
}

// ---- dcmjs-codecs (WASM IJG libjpeg 6b in 8/12/16-bit builds, as dcmtk uses; RLE) -------

/** JPEG Extended (Process 2 & 4): the one JPEG syntax that allows 12-bit samples. */
const JPEG_EXTENDED = '1.2.840.10008.1.2.4.51';

type DcmjsCodecs = typeof import('dcmjs-codecs');
let dcmjsCodecs: Promise<DcmjsCodecs> | undefined;
function codecs(): Promise<DcmjsCodecs> {
  if (!dcmjsCodecs) {
    const c = require('dcmjs-codecs') as DcmjsCodecs;
    // The package turns its logger fully on at load, and anything the WASM writes
    // to stdout/stderr goes to console.error through it. Decode failures arrive as
    // thrown errors, so keep it off. This is the package's own logger instance,
    // not loglevel's global one.
    c.log.disableAll();
    // In Node the .wasm is read from the package folder, never fetched.
    dcmjsCodecs = c.NativeCodecs.initializeAsync().then(() => c);
  }
  return dcmjsCodecs;
}

/** Little-endian samples of `bytesPer` bytes, read without assuming alignment. */
function readLittle(bytes: Uint8Array, n: number, bytesPer: number): Uint8Array | Uint16Array | Uint32Array {
  if (bytesPer === 1) return bytes.slice(0, n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, n * bytesPer);
  if (bytesPer === 2) {
    const out = new Uint16Array(n);
    for (let i = 0; i < n; i++) out[i] = view.getUint16(i * 2, true);
    return out;
  }
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = view.getUint32(i * 4, true);
  return out;
}

/**
 * What the JPEG stream itself says about its colour, as libjpeg guesses it
 * (jdapimin.c): a JFIF APP0 means YCbCr, an Adobe APP14 says by its transform
 * flag, and otherwise component ids 'R','G','B' mean RGB and anything else YCbCr.
 */
export function jpegStreamIsYcc(jpeg: Uint8Array): boolean {
  let jfif = false;
  let adobe: number | undefined;
  let ids: number[] = [];
  for (let i = 2; i + 4 <= jpeg.length; ) {
    if (jpeg[i] !== 0xff) break;
    const marker = jpeg[i + 1]!;
    if (marker === 0xff) {
      i++;
      continue;
    }
    const len = (jpeg[i + 2]! << 8) | jpeg[i + 3]!;
    const seg = jpeg.subarray(i + 4, i + 2 + len);
    if (marker === 0xe0 && seg[0] === 0x4a && seg[1] === 0x46 && seg[2] === 0x49 && seg[3] === 0x46) jfif = true;
    if (marker === 0xee && seg[0] === 0x41 && seg[1] === 0x64 && seg[2] === 0x6f && seg[3] === 0x62 && seg.length >= 12) adobe = seg[11];
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      const count = seg[5] ?? 0;
      ids = Array.from({ length: count }, (_, k) => seg[6 + k * 3] ?? 0);
    }
    if (marker === 0xda) break;
    i += 2 + len;
  }
  if (jfif) return true;
  if (adobe !== undefined) return adobe !== 0;
  return !(ids[0] === 0x52 && ids[1] === 0x47 && ids[2] === 0x42);
}

/** FIX(x) of libjpeg: x in 16.16 fixed point. */
const fix = (x: number) => Math.floor(x * 65536 + 0.5);
/**
 * libjpeg's YCbCr -> RGB (jdcolor.c, 16-bit fixed point, rounded, clamped): what
 * dcmdjpeg applies before dcm2pnm sees the pixels.
 */
function yccToRgb(s: Uint8Array | Uint16Array, pixels: number, bits: number): void {
  const max = 2 ** bits - 1;
  const center = 2 ** (bits - 1);
  const half = 1 << 15;
  const clamp = (v: number) => (v < 0 ? 0 : v > max ? max : v);
  for (let i = 0; i < pixels; i++) {
    const y = s[i * 3]!;
    const cb = s[i * 3 + 1]! - center;
    const cr = s[i * 3 + 2]! - center;
    s[i * 3] = clamp(y + Math.floor((fix(1.402) * cr + half) / 65536));
    s[i * 3 + 1] = clamp(y + Math.floor((-fix(0.34414) * cb - fix(0.71414) * cr + half) / 65536));
    s[i * 3 + 2] = clamp(y + Math.floor((fix(1.772) * cb + half) / 65536));
  }
}

/**
 * JPEG through IJG libjpeg (dcmjs-codecs), with no colour conversion inside the
 * decoder. The colour rule is dcmtk's: the file's Photometric Interpretation says
 * whether the components are YCbCr (YBR_*), and an RGB file is converted only when
 * the stream says YCbCr (GDCM writes lossy YCbCr streams into files labelled RGB).
 * An Adobe "no transform" marker on a YBR file therefore changes nothing.
 */
async function decodeIjgJpeg(h: DicomHeader, name: string, frame: Uint8Array): Promise<FrameSamples> {
  const { NativeCodecs, Context } = await codecs();
  const bytesPer = h.bitsStored > 8 ? 2 : 1;
  const input = new Context({
    width: h.columns,
    height: h.rows,
    // The decoder sizes its output by this, and a 12-bit sample takes 2 bytes
    // whatever the header allocates.
    bitsAllocated: bytesPer * 8,
    bitsStored: h.bitsStored,
    samplesPerPixel: h.samplesPerPixel,
    pixelRepresentation: h.pixelRepresentation,
    planarConfiguration: 0, // JPEG decoders always return interleaved samples
    photometricInterpretation: h.photometric,
    encodedBuffer: frame,
  });
  const out = NativeCodecs.decodeJpeg(input, { convertColorspaceToRgb: false });
  // The returned Context only echoes the size and components we passed in, but the
  // buffer is as large as the JPEG's own frame header says: its length is the check.
  const channels = h.samplesPerPixel;
  const bytes = out.getDecodedBuffer() ?? new Uint8Array(0);
  const n = h.rows * h.columns * channels;
  if (bytes.length !== n * bytesPer) {
    throw dicomError(name, `decoded ${bytes.length} bytes, but ${h.columns}x${h.rows}x${channels} ${bytesPer * 8}-bit samples need ${n * bytesPer}`);
  }
  const samples = readLittle(bytes, n, bytesPer) as Uint8Array | Uint16Array;
  if (channels === 3 && (h.photometric.startsWith('YBR') || jpegStreamIsYcc(frame))) yccToRgb(samples, h.rows * h.columns, bytesPer * 8);
  return { samples, channels, shift: 0, colour: 'RGB' };
}

/**
 * RLE Lossless (PS3.5 Annex G) through dcmjs-codecs, for any number of byte
 * segments (1, 2 or 4 bytes a sample, 1 or 3 samples). Its output follows the
 * file's Planar Configuration.
 */
async function decodeRle(h: DicomHeader, name: string, frame: Uint8Array): Promise<FrameSamples> {
  const { NativeCodecs, Context } = await codecs();
  const perSample = h.bitsAllocated / 8;
  const segments = frame.length >= 4 ? new DataView(frame.buffer, frame.byteOffset, 4).getUint32(0, true) : 0;
  if (segments !== perSample * h.samplesPerPixel) {
    throw dicomError(name, `RLE frame has ${segments} segments, but ${h.samplesPerPixel} sample(s) of ${h.bitsAllocated} bits need ${perSample * h.samplesPerPixel}`);
  }
  // The decoder fills whatever size it is told, so check here that every segment
  // holds one byte per pixel: a header whose size disagrees is an error, not a picture.
  const header = new DataView(frame.buffer, frame.byteOffset, Math.min(64, frame.length));
  for (let k = 0; k < segments; k++) {
    const start = header.getUint32(4 + k * 4, true);
    const end = k + 1 < segments ? header.getUint32(8 + k * 4, true) : frame.length;
    const got = packBitsLength(frame, start, end);
    // An odd-length segment ends in a pad byte, which reads as one byte more.
    if (got !== h.rows * h.columns && got !== h.rows * h.columns + 1) {
      throw dicomError(name, `RLE segment ${k + 1} holds ${got} bytes, but ${h.columns}x${h.rows} needs ${h.rows * h.columns}`);
    }
  }
  const input = new Context({
    width: h.columns,
    height: h.rows,
    bitsAllocated: h.bitsAllocated,
    bitsStored: h.bitsStored,
    samplesPerPixel: h.samplesPerPixel,
    pixelRepresentation: h.pixelRepresentation,
    planarConfiguration: h.planarConfiguration,
    photometricInterpretation: h.photometric,
    encodedBuffer: frame,
  });
  const bytes = NativeCodecs.decodeRle(input, {}).getDecodedBuffer() ?? new Uint8Array(0);
  const n = h.rows * h.columns * h.samplesPerPixel;
  if (bytes.length !== n * perSample) throw dicomError(name, `decoded ${bytes.length} bytes, expected ${n * perSample}`);
  const samples = readLittle(bytes, n, perSample);
  const interleaved = h.samplesPerPixel === 3 && h.planarConfiguration === 1 ? unplanar(samples, h.rows * h.columns) : samples;
  return { samples: interleaved, channels: h.samplesPerPixel, shift: h.highBit - h.bitsStored + 1, colour: colourOf(h) };
}

/** How many bytes a PackBits segment (PS3.5 G.3.1) decodes to. */
function packBitsLength(b: Uint8Array, start: number, end: number): number {
  let n = 0;
  let i = start;
  const stop = Math.min(end, b.length);
  while (i < stop) {
    const c = b[i]!;
    if (c < 128) {
      n += c + 1;
      i += c + 2;
    } else if (c > 128) {
      n += 257 - c;
      i += 2;
    } else i++; // -128: no operation
  }
  return n;
}

/** A fresh copy at offset 0, for decoders that take a whole ArrayBuffer. Not `slice()`: on a Buffer that is a view. */
function copyOf(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(bytes.length);
  out.set(bytes);
  return out;
}

// ---- frame extraction --------------------------------------------------------------

/** Whether a fragment opens a new frame: the codec's start-of-stream marker (never inside entropy-coded data). */
function startsFrame(codec: string, f: Uint8Array): boolean {
  if (codec === 'j2k') return (f[0] === 0xff && f[1] === 0x4f && f[2] === 0xff && f[3] === 0x51) || (f[4] === 0x6a && f[5] === 0x50); // SOC+SIZ, or a JP2 box
  return f[0] === 0xff && f[1] === 0xd8; // SOI: JPEG and JPEG-LS
}

/** The compressed bytes of frame 1. */
function firstEncapsulatedFrame(h: DicomHeader, name: string): Uint8Array {
  const dp = require('dicom-parser') as typeof import('dicom-parser');
  const pd = h.pixelData;
  const fragments = pd.fragments ?? [];
  if (h.frames === 1) return dp.readEncapsulatedPixelDataFromFragments(h.dataSet, pd, 0, fragments.length) as Uint8Array;
  if (pd.basicOffsetTable && pd.basicOffsetTable.length > 0) return dp.readEncapsulatedImageFrame(h.dataSet, pd, 0) as Uint8Array;
  // The Extended Offset Table has the same offsets, in 64 bits (PS3.5 A.4).
  if (h.extendedOffsets && h.extendedOffsets.length > 0) return dp.readEncapsulatedImageFrame(h.dataSet, pd, 0, h.extendedOffsets) as Uint8Array;
  // No table: one fragment per frame (the only layout RLE allows), or frame 1 runs
  // up to the next fragment that opens a codestream.
  const codec = h.transferSyntax.codec;
  if (codec === 'rle' || fragments.length === h.frames) return dp.readEncapsulatedPixelDataFromFragments(h.dataSet, pd, 0, 1) as Uint8Array;
  const base = h.dataSet.byteArray;
  let count = 1;
  while (count < fragments.length) {
    const f = fragments[count]!;
    if (startsFrame(codec, base.subarray(f.position, f.position + Math.min(8, f.length)))) break;
    count++;
  }
  if (count === fragments.length && h.frames > 1) {
    throw dicomError(name, `cannot find where frame 1 ends: ${h.frames} frames in ${fragments.length} fragments and no offset table`);
  }
  return dp.readEncapsulatedPixelDataFromFragments(h.dataSet, pd, 0, count) as Uint8Array;
}

function colourOf(h: DicomHeader): 'RGB' | 'YBR_FULL' | undefined {
  if (h.samplesPerPixel !== 3) return undefined;
  return h.photometric === 'YBR_FULL' || h.photometric === 'YBR_FULL_422' ? 'YBR_FULL' : 'RGB';
}

function nativeFrame(h: DicomHeader, bigEndian: boolean): FrameSamples {
  const pixels = h.rows * h.columns;
  const ybr422 = h.photometric === 'YBR_FULL_422' && h.samplesPerPixel === 3;
  // YBR_FULL_422: Y1 Y2 Cb Cr for each pair of pixels, so 2 stored samples a pixel.
  const n = ybr422 ? pixels * 2 : pixels * h.samplesPerPixel;
  const pd = h.pixelData;
  // The data set may be a re-allocated (inflated) copy of `bytes`.
  const src = h.dataSet.byteArray;
  const view = new DataView(src.buffer, src.byteOffset + pd.dataOffset, pd.length);
  let samples: Uint32Array | Uint8Array | Uint16Array;
  switch (h.bitsAllocated) {
    case 1: {
      samples = new Uint8Array(n);
      for (let i = 0; i < n; i++) samples[i] = (view.getUint8(i >> 3) >> (i & 7)) & 1;
      break;
    }
    case 8:
      samples = new Uint8Array(src.buffer, src.byteOffset + pd.dataOffset, n).slice();
      break;
    case 16: {
      samples = new Uint16Array(n);
      for (let i = 0; i < n; i++) samples[i] = view.getUint16(i * 2, !bigEndian);
      break;
    }
    default: {
      samples = new Uint32Array(n);
      if (bigEndian) {
        // Big-endian Pixel Data is OW: swapped in 16-bit words, so a 32-bit sample
        // is its low word then its high word, each big endian (as dcmtk writes and reads it).
        for (let i = 0; i < n; i++) samples[i] = view.getUint16(i * 4, false) + view.getUint16(i * 4 + 2, false) * 65536;
      } else {
        for (let i = 0; i < n; i++) samples[i] = view.getUint32(i * 4, true);
      }
    }
  }
  let out: ArrayLike<number> = samples;
  if (ybr422) out = expand422(samples, pixels);
  else if (h.samplesPerPixel === 3 && h.planarConfiguration === 1) out = unplanar(samples, pixels);
  return { samples: out, channels: h.samplesPerPixel, shift: h.highBit - h.bitsStored + 1, colour: colourOf(h) };
}

/** YBR_FULL_422 pairs (Y1 Y2 Cb Cr) -> YBR_FULL per pixel, each pair sharing its chroma. */
function expand422(s: ArrayLike<number>, pixels: number): Uint16Array {
  const out = new Uint16Array(pixels * 3);
  for (let p = 0; p < pixels; p += 2) {
    const k = p * 2;
    out[p * 3] = s[k]!;
    out[p * 3 + 3] = s[k + 1]!;
    out[p * 3 + 1] = out[p * 3 + 4] = s[k + 2]!;
    out[p * 3 + 2] = out[p * 3 + 5] = s[k + 3]!;
  }
  return out;
}

function unplanar(s: ArrayLike<number>, pixels: number): Uint32Array {
  const out = new Uint32Array(pixels * 3);
  for (let i = 0; i < pixels; i++) {
    out[i * 3] = s[i]!;
    out[i * 3 + 1] = s[pixels + i]!;
    out[i * 3 + 2] = s[2 * pixels + i]!;
  }
  return out;
}

function checkSize(h: DicomHeader, name: string, w: number, hgt: number, channels: number): void {
  if (w !== h.columns || hgt !== h.rows) {
    throw dicomError(name, `decoded frame is ${w}x${hgt} but the header says ${h.columns}x${h.rows}`);
  }
  if (channels !== h.samplesPerPixel) {
    throw dicomError(name, `decoded frame has ${channels} components but Samples per Pixel is ${h.samplesPerPixel}`);
  }
}

/** Checks the sample count, so that a frame of the wrong size is an error, never a picture. */
function checkCount(h: DicomHeader, name: string, got: number): void {
  const want = h.rows * h.columns * h.samplesPerPixel;
  if (got !== want) throw dicomError(name, `decoded ${got} samples, but ${h.columns}x${h.rows}x${h.samplesPerPixel} needs ${want}`);
}

/** Decodes frame 1 of the image described by `h`. */
export async function decodeFirstFrame(h: DicomHeader, name: string): Promise<FrameSamples> {
  const codec = h.transferSyntax.codec;
  if (codec === 'native') return nativeFrame(h, false);
  if (codec === 'native-be') return nativeFrame(h, true);

  const what = h.transferSyntax.name;
  if (codec === 'jpeg' && h.bitsStored > 8 && h.transferSyntax.uid !== JPEG_EXTENDED) {
    // Baseline (process 1) is 8-bit by definition: such a file contradicts itself.
    throw dicomError(name, `${what} is 8-bit only, but Bits Stored is ${h.bitsStored}`);
  }
  try {
    const frame = firstEncapsulatedFrame(h, name);
    switch (codec) {
      case 'jpeg': {
        // cornerstone's libjpeg-turbo build is 8-bit only and converts colour by the
        // stream's markers alone, so 12-bit and colour JPEG go to IJG libjpeg, as in dcmtk.
        if (h.bitsStored > 8 || h.samplesPerPixel === 3) return await decodeIjgJpeg(h, name, frame);
        const { info, samples } = await runWasm('@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs', 'JPEGDecoder', frame);
        checkSize(h, name, info.width, info.height, info.componentCount);
        checkCount(h, name, samples.length);
        return { samples, channels: info.componentCount, shift: 0 };
      }
      case 'jpeg-ls': {
        const { info, samples } = await runWasm('@cornerstonejs/codec-charls/decodewasmjs', 'JpegLSDecoder', frame);
        checkSize(h, name, info.width, info.height, info.componentCount);
        checkCount(h, name, samples.length);
        return { samples, channels: info.componentCount, shift: 0, colour: colourOf(h) };
      }
      case 'j2k': {
        const { info, samples } = await runWasm('@cornerstonejs/codec-openjpeg/decodewasmjs', 'J2KDecoder', frame);
        checkSize(h, name, info.width, info.height, info.componentCount);
        checkCount(h, name, samples.length);
        // Lossy JPEG 2000 can decode to values beyond Bits Stored (ringing at the
        // brightest pixels). Masking them to Bits Stored would wrap a white pixel to
        // black; GDCM, whose decode dcmtk renders, keeps them and sets Bits Stored to
        // the codestream's precision, and so do we. OpenJPEG also undoes the
        // codestream's colour transform (YBR_RCT / YBR_ICT), so colour comes out RGB.
        const bitsStored = Math.max(h.bitsStored, info.bitsPerSample);
        return { samples, channels: info.componentCount, shift: 0, colour: 'RGB', bitsStored };
      }
      case 'jpeg-lossless': {
        const { Decoder } = require('@cornerstonejs/jpeg-lossless-decoder-js') as {
          Decoder: new () => { decode(b: ArrayBuffer, off: number, len: number): Uint8Array | Uint16Array };
        };
        const copy = copyOf(frame);
        const out = new Decoder().decode(copy.buffer, 0, copy.length);
        checkCount(h, name, out.length);
        return { samples: out, channels: h.samplesPerPixel, shift: 0, colour: colourOf(h) };
      }
      case 'rle':
        return await decodeRle(h, name, frame);
    }
  } catch (err) {
    // Our own checks (a frame of the wrong size, ...) and the decoders' failures
    // alike: "<file>: cannot decode <syntax> pixel data (<reason>)".
    const own = err instanceof Error && (err as { code?: string }).code === 'ERR_IMAGE';
    let msg = err instanceof Error ? err.message : typeof err === 'number' ? `decoder abort ${err}` : String(err);
    if (own && msg.startsWith(`${name}: `)) msg = msg.slice(name.length + 2);
    throw dicomError(name, `cannot decode ${what} pixel data (${msg})`, err);
  }
  throw dicomError(name, `unsupported transfer syntax ${what}`);
}
