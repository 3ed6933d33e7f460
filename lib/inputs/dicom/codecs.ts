/**
 * Gets the first frame's samples out of the pixel data element. No codec is
 * written here: compressed frames go to the npm decoders chosen in docs/dicom.md
 * (cornerstone's WASM builds of libjpeg-turbo, CharLS and OpenJPEG, cornerstone's
 * JPEG lossless decoder, daikon's RLE decoder, and dcmjs-codecs' WASM build of IJG
 * libjpeg 6b for 12-bit JPEG). Each loader is created once.
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

// ---- 12-bit JPEG: dcmjs-codecs (WASM IJG libjpeg 6b, built for 12-bit as dcmtk does) ---

/** JPEG Extended (Process 2 & 4): the one JPEG syntax that allows 12-bit samples. */
const JPEG_EXTENDED = '1.2.840.10008.1.2.4.51';

type DcmjsCodecs = typeof import('dcmjs-codecs');
let dcmjsCodecs: Promise<DcmjsCodecs> | undefined;
function jpeg12(): Promise<DcmjsCodecs> {
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

async function decodeJpeg12(h: DicomHeader, name: string, frame: Uint8Array): Promise<FrameSamples> {
  const { NativeCodecs, Context } = await jpeg12();
  const input = new Context({
    width: h.columns,
    height: h.rows,
    // The decoder sizes its output by this, and a 12-bit sample takes 2 bytes
    // whatever the header allocates (8 here would overrun its buffer).
    bitsAllocated: 16,
    bitsStored: h.bitsStored,
    samplesPerPixel: h.samplesPerPixel,
    pixelRepresentation: h.pixelRepresentation,
    planarConfiguration: 0, // JPEG decoders always return interleaved samples
    photometricInterpretation: h.photometric,
    encodedBuffer: frame,
  });
  // The same colour rule the package's own JPEG transcoder uses: YBR comes back as RGB.
  const out = NativeCodecs.decodeJpeg(input, { convertColorspaceToRgb: h.photometric !== 'RGB' });
  // The returned Context only echoes the size and components we passed in, but the
  // buffer is as large as the JPEG's own frame header says: its length is the check.
  const channels = h.samplesPerPixel;
  const bytes = out.getDecodedBuffer() ?? new Uint8Array(0);
  const n = h.rows * h.columns * channels;
  if (bytes.length !== n * 2) {
    throw dicomError(name, `decoded ${bytes.length} bytes, but ${h.columns}x${h.rows}x${channels} 16-bit samples need ${n * 2}`);
  }
  // Little-endian 16-bit samples, read without assuming the buffer's alignment.
  const samples = new Uint16Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, n * 2);
  for (let i = 0; i < n; i++) samples[i] = view.getUint16(i * 2, true);
  return { samples, channels, shift: 0 };
}

/**
 * A fresh copy at offset 0, for decoders that take a whole ArrayBuffer. Not
 * `slice()`: on a Buffer that is a view of the same memory.
 */
function copyOf(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(bytes.length);
  out.set(bytes);
  return out;
}

// ---- frame extraction --------------------------------------------------------------

/** The compressed bytes of frame 1. */
function firstEncapsulatedFrame(h: DicomHeader): Uint8Array {
  const dp = require('dicom-parser') as typeof import('dicom-parser');
  const pd = h.pixelData;
  const fragments = pd.fragments ?? [];
  if (h.frames === 1) return dp.readEncapsulatedPixelDataFromFragments(h.dataSet, pd, 0, fragments.length) as Uint8Array;
  if (pd.basicOffsetTable && pd.basicOffsetTable.length > 0) return dp.readEncapsulatedImageFrame(h.dataSet, pd, 0) as Uint8Array;
  if (h.transferSyntax.codec === 'jpeg' || h.transferSyntax.codec === 'jpeg-lossless') {
    // No offset table: JPEG frames can be found by their SOI/EOI markers.
    const bot = dp.createJPEGBasicOffsetTable(h.dataSet, pd);
    return dp.readEncapsulatedImageFrame(h.dataSet, pd, 0, bot) as Uint8Array;
  }
  // Otherwise one fragment per frame is the only layout the standard allows.
  return dp.readEncapsulatedPixelDataFromFragments(h.dataSet, pd, 0, 1) as Uint8Array;
}

function nativeFrame(h: DicomHeader, bigEndian: boolean): FrameSamples {
  const n = h.rows * h.columns * h.samplesPerPixel;
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
      for (let i = 0; i < n; i++) samples[i] = view.getUint32(i * 4, !bigEndian);
    }
  }
  const interleaved = h.samplesPerPixel === 3 && h.planarConfiguration === 1 ? unplanar(samples, h.rows * h.columns) : samples;
  return { samples: interleaved, channels: h.samplesPerPixel, shift: h.highBit - h.bitsStored + 1 };
}

function unplanar(s: ArrayLike<number>, pixels: number): Uint16Array {
  const out = new Uint16Array(pixels * 3);
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

/** Decodes frame 1 of the image described by `h`. */
export async function decodeFirstFrame(h: DicomHeader, name: string): Promise<FrameSamples> {
  const codec = h.transferSyntax.codec;
  if (codec === 'native') return nativeFrame(h, false);
  if (codec === 'native-be') return nativeFrame(h, true);

  const frame = firstEncapsulatedFrame(h);
  const what = h.transferSyntax.name;
  try {
    switch (codec) {
      case 'jpeg': {
        if (h.bitsStored > 8) {
          // cornerstone's libjpeg-turbo build is 8-bit only, so 12-bit JPEG Extended
          // (process 4) goes to dcmjs-codecs. Baseline (process 1) is 8-bit by
          // definition: such a file contradicts itself, and we say so.
          if (h.transferSyntax.uid !== JPEG_EXTENDED) {
            throw dicomError(name, `${what} is 8-bit only, but Bits Stored is ${h.bitsStored}`);
          }
          return await decodeJpeg12(h, name, frame);
        }
        const { info, samples } = await runWasm('@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs', 'JPEGDecoder', frame);
        checkSize(h, name, info.width, info.height, info.componentCount);
        return { samples, channels: info.componentCount, shift: 0 };
      }
      case 'jpeg-ls': {
        const { info, samples } = await runWasm('@cornerstonejs/codec-charls/decodewasmjs', 'JpegLSDecoder', frame);
        checkSize(h, name, info.width, info.height, info.componentCount);
        return { samples, channels: info.componentCount, shift: 0 };
      }
      case 'j2k': {
        const { info, samples } = await runWasm('@cornerstonejs/codec-openjpeg/decodewasmjs', 'J2KDecoder', frame);
        checkSize(h, name, info.width, info.height, info.componentCount);
        return { samples, channels: info.componentCount, shift: 0 };
      }
      case 'jpeg-lossless': {
        const { Decoder } = require('@cornerstonejs/jpeg-lossless-decoder-js') as {
          Decoder: new () => { decode(b: ArrayBuffer, off: number, len: number): Uint8Array | Uint16Array };
        };
        const copy = copyOf(frame);
        const out = new Decoder().decode(copy.buffer, 0, copy.length);
        if (out.length !== h.rows * h.columns * h.samplesPerPixel) {
          throw dicomError(name, `decoded ${out.length} samples, expected ${h.rows * h.columns * h.samplesPerPixel}`);
        }
        return { samples: out, channels: h.samplesPerPixel, shift: 0 };
      }
      case 'rle': {
        const RLE = require('daikon/src/rle.js') as new () => { decode(b: ArrayBuffer, le: boolean, n: number): DataView; numSegments: number };
        const copy = copyOf(frame);
        const rle = new RLE();
        const pixels = h.rows * h.columns;
        const view = rle.decode(copy.buffer, true, pixels);
        const perSample = h.bitsAllocated / 8;
        if (rle.numSegments !== perSample * h.samplesPerPixel) {
          throw dicomError(name, `RLE frame has ${rle.numSegments} segments, expected ${perSample * h.samplesPerPixel}`);
        }
        const n = pixels * h.samplesPerPixel;
        const samples = perSample === 2 ? new Uint16Array(n) : new Uint8Array(n);
        for (let i = 0; i < n; i++) samples[i] = perSample === 2 ? view.getUint16(i * 2, true) : view.getUint8(i);
        return { samples, channels: h.samplesPerPixel, shift: 0 };
      }
    }
  } catch (err) {
    if (err instanceof Error && (err as { code?: string }).code === 'ERR_IMAGE') throw err;
    const msg = err instanceof Error ? err.message : typeof err === 'number' ? `decoder abort ${err}` : String(err);
    throw dicomError(name, `cannot decode ${what} pixel data (${msg})`, err);
  }
  throw dicomError(name, `unsupported transfer syntax ${what}`);
}
