/**
 * Reads the attributes that rendering needs out of a DICOM Part 10 file, using
 * dicom-parser. Patient identifiers are never read: nothing here can leak them.
 */

import { createRequire } from 'node:module';
import { inflateRawSync } from 'node:zlib';
import type { DataSet, Element } from 'dicom-parser';
import { CxrError } from '../../errors.js';
import { isDicom } from './detect.js';
import { describeTransferSyntax, findTransferSyntax, type TransferSyntax } from './syntax.js';

// dicom-parser is a UMD bundle whose CommonJS exports Node's ESM loader cannot
// see by name, so it is loaded with require and typed from its own .d.ts.
const dicomParser = createRequire(import.meta.url)('dicom-parser') as typeof import('dicom-parser');

/** Largest image we accept, in pixels per frame: a 1 GB gray8 buffer is no radiograph. */
export const MAX_PIXELS = 16384 * 16384;
/** Largest side we accept. */
export const MAX_SIDE = 32768;

/** A LUT from a Modality or VOI LUT Sequence item (PS3.3 C.11.1 / C.11.2). */
export interface Lut {
  /** Entries in the table. */
  count: number;
  /** First input value mapped (signed when the pixel data is). */
  firstMapped: number;
  /** Bits per entry (8..16). */
  bits: number;
  data: Uint16Array;
  explanation?: string;
}

export interface DicomHeader {
  transferSyntax: TransferSyntax;
  rows: number;
  columns: number;
  samplesPerPixel: number;
  photometric: string;
  bitsAllocated: number;
  bitsStored: number;
  highBit: number;
  pixelRepresentation: number;
  planarConfiguration: number;
  frames: number;
  rescaleSlope: number;
  rescaleIntercept: number;
  modalityLut?: Lut;
  voiLuts: Lut[];
  windows: { center: number; width: number }[];
  voiLutFunction: string;
  presentationLutShape: string;
  viewPosition: string;
  bodyPart: string;
  sopInstanceUid?: string;
  /** The Extended Offset Table's frame offsets, when the file has one. */
  extendedOffsets?: number[];
  dataSet: DataSet;
  pixelData: Element;
}

export function dicomError(name: string, reason: string, cause?: unknown): CxrError {
  return new CxrError('ERR_IMAGE', `${name}: ${reason}`, cause === undefined ? undefined : { cause });
}

/**
 * dicom-parser 1.8 reads the 64-bit VRs (OV, SV, UV) with a 2-byte length, which
 * derails it at the Extended Offset Table (7FE0,0001/0002, OV). Those two elements
 * are relabelled OB in a copy (same layout: 2 reserved bytes, 4-byte length), and
 * read as 64-bit offsets by extendedOffsets().
 */
function relabelExtendedOffsetTable(bytes: Uint8Array): Uint8Array {
  const search = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let out = bytes;
  for (const el of [0x01, 0x02]) {
    // (7FE0,000x) OV, explicit VR little endian
    const at = search.indexOf(Buffer.from([0xe0, 0x7f, el, 0x00, 0x4f, 0x56]));
    if (at < 0) continue;
    if (out === bytes) out = bytes.slice(); // a plain Uint8Array here: a real copy
    out[at + 5] = 0x42; // 'B'
  }
  return out;
}

/**
 * A data set with no preamble, no "DICM" and no meta header (ACR-NEMA style
 * exports): implicit VR little endian unless the first element carries a VR.
 */
function rawSyntax(bytes: Uint8Array): string {
  const a = bytes[4] ?? 0;
  const b = bytes[5] ?? 0;
  return a >= 0x41 && a <= 0x5a && b >= 0x41 && b <= 0x5a ? '1.2.840.10008.1.2.1' : '1.2.840.10008.1.2';
}

/** The transfer syntax UID the file declares (or implies, for a bare data set); undefined when unreadable. */
export function transferSyntaxOf(input: Uint8Array): string | undefined {
  const bytes = plainBytes(input);
  if (!isDicom(bytes)) return rawSyntax(bytes);
  try {
    return dicomParser.readPart10Header(bytes).string('x00020010')?.trim() || undefined;
  } catch {
    return undefined;
  }
}

function parse(input: Uint8Array, name: string): DataSet {
  const bytes = relabelExtendedOffsetTable(input);
  try {
    return dicomParser.parseDicom(bytes, {
      ...(isDicom(bytes) ? {} : { TransferSyntaxUID: rawSyntax(bytes) }),
      // Deflated syntax: Node's zlib inflates the data set after the meta header.
      inflater: (arr: Uint8Array, position: number) => {
        const inflated = inflateRawSync(arr.subarray(position));
        const full = new Uint8Array(position + inflated.length);
        full.set(arr.subarray(0, position), 0);
        full.set(inflated, position);
        return full;
      },
    } as never);
  } catch (err) {
    // dicom-parser throws { exception, dataSet } or a plain string.
    const e = err as { exception?: string; dataSet?: DataSet; message?: string };
    const text = e?.exception ?? e?.message ?? String(err);
    const partial = e?.dataSet;
    if (/overrun|overread|eof|end of/i.test(text)) {
      // The partial data set tells which element was cut short.
      const pd = partial?.elements.x7fe00010;
      if (pd) {
        const have = Math.max(0, bytes.length - pd.dataOffset);
        throw dicomError(name, `truncated pixel data element: ${have} of ${pd.length} bytes present`, err);
      }
      throw dicomError(name, 'truncated DICOM file: an element runs past the end of the file', err);
    }
    throw dicomError(name, `not a readable DICOM file (${text})`, err);
  }
}

function num(ds: DataSet, tag: string, index = 0): number | undefined {
  const s = ds.string(tag, index);
  if (s === undefined || s.trim() === '') return undefined;
  const v = Number(s.trim());
  return Number.isFinite(v) ? v : undefined;
}

function multi(ds: DataSet, tag: string): number[] {
  const s = ds.string(tag);
  if (!s) return [];
  return s.split('\\').map((v) => Number(v.trim()));
}

/** The Extended Offset Table (7FE0,0001), 64-bit offsets like the Basic Offset Table's. */
function extendedOffsets(ds: DataSet): number[] | undefined {
  const el = ds.elements.x7fe00001;
  if (!el || el.length < 8 || el.length % 8 !== 0) return undefined;
  const view = new DataView(ds.byteArray.buffer, ds.byteArray.byteOffset + el.dataOffset, el.length);
  const out: number[] = [];
  for (let i = 0; i < el.length; i += 8) out.push(Number(view.getBigUint64(i, true)));
  return out;
}

/** Reads a LUT item; the descriptor's first value 0 means 65536 entries (C.11.1.1.1). */
function readLut(ds: DataSet, item: DataSet, signed: boolean): Lut | undefined {
  const desc = item.elements.x00283002;
  const dataEl = item.elements.x00283006;
  if (!desc || !dataEl) return undefined;
  const count = item.uint16('x00283002', 0) || 65536;
  const firstRaw = item.uint16('x00283002', 1) ?? 0;
  const firstMapped = signed ? (firstRaw << 16) >> 16 : firstRaw;
  const bits = item.uint16('x00283002', 2) ?? 16;
  const data = new Uint16Array(count);
  const little = ds.string('x00020010') !== '1.2.840.10008.1.2.2';
  const bytesPer = dataEl.length >= count * 2 ? 2 : 1;
  const view = new DataView(item.byteArray.buffer, item.byteArray.byteOffset + dataEl.dataOffset, Math.min(dataEl.length, count * bytesPer));
  for (let i = 0; i < count && i * bytesPer < view.byteLength; i++) {
    data[i] = bytesPer === 2 ? view.getUint16(i * 2, little) : view.getUint8(i);
  }
  return { count, firstMapped, bits, data, explanation: item.string('x00283003') };
}

/**
 * The bytes as a plain Uint8Array over the same memory. Node hands us Buffers that
 * view a larger block (a pooled readFile result, a `subarray`), and on a Buffer
 * `slice()` is a view too: every later copy and every `.buffer` would then see the
 * whole block. From here on the data is a Uint8Array, whose `slice()` copies, and
 * code that reaches for `.buffer` must pass `byteOffset` and `byteLength` with it.
 */
export function plainBytes(bytes: Uint8Array): Uint8Array {
  return Object.getPrototypeOf(bytes) === Uint8Array.prototype ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Parses `bytes` and checks that it holds a frame we can render. */
export function readHeader(input: Uint8Array, name: string): DicomHeader {
  const ds = parse(plainBytes(input), name);
  const tsUid = (ds.string('x00020010') ?? '1.2.840.10008.1.2').trim();
  const pixelData = ds.elements.x7fe00010 ?? ds.elements.x7fe00008 ?? ds.elements.x7fe00009;
  if (!pixelData) {
    const modality = ds.string('x00080060');
    throw dicomError(name, `no pixel data in this DICOM file${modality ? ` (modality ${modality})` : ''}; it is not an image`);
  }
  const transferSyntax = findTransferSyntax(tsUid);
  if (!transferSyntax) throw dicomError(name, `unsupported transfer syntax ${describeTransferSyntax(tsUid)}`);

  const rows = ds.uint16('x00280010') ?? 0;
  const columns = ds.uint16('x00280011') ?? 0;
  if (rows === 0 || columns === 0) throw dicomError(name, `missing or zero Rows/Columns (${rows}x${columns})`);
  if (rows > MAX_SIDE || columns > MAX_SIDE || rows * columns > MAX_PIXELS) {
    throw dicomError(name, `image size ${columns}x${rows} is beyond the limit (${MAX_SIDE} per side, ${MAX_PIXELS} pixels)`);
  }
  const bitsAllocated = ds.uint16('x00280100') ?? 16;
  const bitsStored = ds.uint16('x00280101') ?? bitsAllocated;
  const highBit = ds.uint16('x00280102') ?? bitsStored - 1;
  const pixelRepresentation = ds.uint16('x00280103') ?? 0;
  const samplesPerPixel = ds.uint16('x00280002') ?? 1;
  if (![1, 8, 16, 32].includes(bitsAllocated) || bitsStored < 1 || bitsStored > bitsAllocated || highBit >= bitsAllocated || highBit < bitsStored - 1) {
    throw dicomError(name, `unsupported pixel layout: Bits Allocated ${bitsAllocated}, Bits Stored ${bitsStored}, High Bit ${highBit}`);
  }
  if (samplesPerPixel !== 1 && samplesPerPixel !== 3) throw dicomError(name, `unsupported Samples per Pixel ${samplesPerPixel}`);
  const signed = pixelRepresentation === 1;

  // Encapsulated data must come with the fragments dicom-parser found; native
  // data must hold a whole first frame.
  const photometric = (ds.string('x00280004') ?? 'MONOCHROME2').trim().toUpperCase();
  if (transferSyntax.codec === 'native' || transferSyntax.codec === 'native-be') {
    // YBR_FULL_422 keeps one Cb and one Cr per pair of pixels: 2 samples a pixel.
    const perPixel = photometric === 'YBR_FULL_422' && samplesPerPixel === 3 ? 2 : samplesPerPixel;
    if (perPixel === 2 && columns % 2 !== 0) throw dicomError(name, `YBR_FULL_422 needs an even number of columns, not ${columns}`);
    const frameBytes = Math.ceil((rows * columns * perPixel * bitsAllocated) / 8);
    if (pixelData.encapsulatedPixelData) throw dicomError(name, 'encapsulated pixel data in an uncompressed transfer syntax');
    if (pixelData.dataOffset + Math.min(pixelData.length, frameBytes) > ds.byteArray.length || pixelData.length < frameBytes) {
      throw dicomError(name, `truncated pixel data element: ${pixelData.length} bytes, need ${frameBytes} for one ${columns}x${rows} frame`);
    }
    // Longer than all frames (beyond the pad byte to even length): the header's
    // size is not the data's, and rendering it would shear the picture.
    const frames = Math.max(1, Math.trunc(num(ds, 'x00280008') ?? 1));
    const allFrames = frameBytes * frames;
    if (pixelData.length > allFrames + (allFrames % 2)) {
      throw dicomError(name, `pixel data holds ${pixelData.length} bytes, but ${frames} frame(s) of ${columns}x${rows}x${perPixel} ${bitsAllocated}-bit samples need ${allFrames}`);
    }
  } else if (!pixelData.encapsulatedPixelData || !pixelData.fragments?.length) {
    throw dicomError(name, `truncated pixel data element: no compressed fragments for ${transferSyntax.name}`);
  }

  const modalitySeq = ds.elements.x00283000?.items?.[0]?.dataSet;
  const voiSeq = ds.elements.x00283010?.items ?? [];
  const centers = multi(ds, 'x00281050');
  const widths = multi(ds, 'x00281051');
  const windows: { center: number; width: number }[] = [];
  for (let i = 0; i < Math.min(centers.length, widths.length); i++) {
    if (Number.isFinite(centers[i]) && Number.isFinite(widths[i]) && widths[i]! > 0) windows.push({ center: centers[i]!, width: widths[i]! });
  }
  return {
    transferSyntax,
    rows,
    columns,
    samplesPerPixel,
    photometric,
    bitsAllocated,
    bitsStored,
    highBit,
    pixelRepresentation,
    planarConfiguration: ds.uint16('x00280006') ?? 0,
    frames: Math.max(1, Math.trunc(num(ds, 'x00280008') ?? 1)),
    rescaleSlope: num(ds, 'x00281053') ?? 1,
    rescaleIntercept: num(ds, 'x00281052') ?? 0,
    modalityLut: modalitySeq ? readLut(ds, modalitySeq, signed) : undefined,
    voiLuts: voiSeq.map((it) => (it.dataSet ? readLut(ds, it.dataSet, signed) : undefined)).filter((l): l is Lut => l !== undefined),
    windows,
    voiLutFunction: (ds.string('x00281056') ?? 'LINEAR').trim().toUpperCase() || 'LINEAR',
    presentationLutShape: (ds.string('x20500020') ?? '').trim().toUpperCase(),
    viewPosition: (ds.string('x00185101') ?? '').trim().toUpperCase(),
    bodyPart: (ds.string('x00180015') ?? '').trim().toUpperCase(),
    sopInstanceUid: ds.string('x00080018')?.trim() || undefined,
    extendedOffsets: extendedOffsets(ds),
    dataSet: ds,
    pixelData,
  };
}
