// safetensors.ts - reads Hugging Face safetensors checkpoints one tensor at a time,
// never loading a whole file.
//
// File layout (the safetensors format):
//   1. u64 little-endian N: the byte length of the header
//   2. N bytes of UTF-8 JSON: { "__metadata__"?: {string: string},
//        <tensor name>: { "dtype": "BF16" | "F16" | "F32" | ..., "shape": [d0, d1, ...],
//                         "data_offsets": [begin, end] } }   (may be padded with spaces)
//   3. the data buffer; offsets are relative to its start (byte 8 + N), tensors are
//      row-major little-endian, and together they cover the buffer with no gaps or overlaps.
// A sharded checkpoint adds `model.safetensors.index.json`:
//   { "metadata": { "total_size": bytes }, "weight_map": { <tensor name>: <shard file> } }.

import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

/** Bytes per element of each safetensors dtype. */
export const SAFETENSORS_DTYPES = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
  F8_E4M3: 1, F8_E5M2: 1,
} as const;

export type SafetensorsDtype = keyof typeof SAFETENSORS_DTYPES;

/** One tensor of a checkpoint. */
export interface SafetensorsTensor {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** The file holding it (as opened: absolute or relative). */
  file: string;
  /** Absolute byte offset of its data in `file`. */
  offset: number;
  nbytes: number;
}

// The reference implementation refuses headers over 100 MB; a 7B model's header is ~30 KB.
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** Float32 value of every float16 bit pattern, built on first use (256 KiB). */
let f16Table: Float32Array | undefined;
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  f16Table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) f16Table[h] = sign * frac * 2 ** -24; // zero and subnormals
    else if (exp === 31) f16Table[h] = frac ? NaN : sign * Infinity;
    else f16Table[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return f16Table;
}

/** Converts little-endian BF16/F16/F32 bytes to float32 (a fresh array). */
export function toFloat32(dtype: SafetensorsDtype, bytes: Uint8Array): Float32Array {
  const n = bytes.length / SAFETENSORS_DTYPES[dtype];
  if (dtype === 'F32') {
    // Copy: the caller may permute the result in place, and the source may be unaligned.
    const out = new Float32Array(n);
    new Uint8Array(out.buffer).set(bytes);
    return out;
  }
  if (dtype !== 'BF16' && dtype !== 'F16') throw new Error(`cannot convert ${dtype} to float32`);
  const out = new Float32Array(n);
  const u32 = new Uint32Array(out.buffer);
  if (dtype === 'BF16') {
    // bfloat16 is the top half of a float32.
    for (let i = 0, j = 0; i < n; i++, j += 2) u32[i] = (bytes[j]! | (bytes[j + 1]! << 8)) << 16;
  } else {
    const table = halfTable();
    for (let i = 0, j = 0; i < n; i++, j += 2) out[i] = table[bytes[j]! | (bytes[j + 1]! << 8)]!;
  }
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** One open .safetensors file. Tensors are read on demand; close() releases the file. */
export class SafetensorsFile {
  readonly tensors: ReadonlyMap<string, SafetensorsTensor>;

  private constructor(
    readonly path: string,
    private fh: FileHandle | null,
    tensors: Map<string, SafetensorsTensor>,
    /** `__metadata__`, string to string. */
    readonly metadata: Readonly<Record<string, string>>,
    /** Size of the file when it was opened. */
    readonly fileSize: number,
  ) {
    this.tensors = tensors;
  }

  /**
   * Opens `file` and validates its header: header length against the file size, every
   * dtype, shape and offset pair, and that the tensors tile the data buffer exactly. A
   * truncated file is reported with the first tensor that runs past its end.
   */
  static async open(file: string): Promise<SafetensorsFile> {
    let fh: FileHandle;
    try {
      fh = await open(file, 'r');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new Error(`${file}: cannot open (${code === 'ENOENT' ? 'file not found' : code ?? String(err)})`);
    }
    try {
      const size = (await fh.stat()).size;
      if (size < 8) throw new Error(`${file}: ${size} bytes is too short for a safetensors file (truncated?)`);
      const lenBuf = Buffer.alloc(8);
      await readExactly(fh, lenBuf, 0, file, 'the header length');
      const headerLen = lenBuf.readBigUInt64LE(0);
      if (headerLen > BigInt(Math.min(MAX_HEADER_BYTES, size - 8))) {
        throw new Error(
          `${file}: header length ${headerLen} exceeds ` +
            (headerLen > BigInt(MAX_HEADER_BYTES) ? `the ${MAX_HEADER_BYTES}-byte limit` : `the file size ${size} (truncated, or not safetensors)`),
        );
      }
      const n = Number(headerLen);
      const headerBuf = Buffer.alloc(n);
      await readExactly(fh, headerBuf, 8, file, 'the header');
      let header: unknown;
      try {
        header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBuf));
      } catch (err) {
        throw new Error(`${file}: the header is not valid UTF-8 JSON (${(err as Error).message})`);
      }
      if (!isObject(header)) throw new Error(`${file}: the header is not a JSON object`);
      const dataStart = 8 + n;
      const dataSize = size - dataStart;
      const { tensors, metadata } = parseHeader(header, file, dataStart, dataSize);
      return new SafetensorsFile(file, fh, tensors, metadata, size);
    } catch (err) {
      await fh.close().catch(() => {});
      throw err;
    }
  }

  /** The raw little-endian bytes of one tensor. */
  async readRaw(name: string): Promise<Uint8Array> {
    const t = this.tensor(name);
    if (!this.fh) throw new Error(`${this.path}: the file is closed`);
    const buf = new Uint8Array(t.nbytes);
    await readExactly(this.fh, buf, t.offset, this.path, `tensor ${name}`);
    return buf;
  }

  /** One BF16, F16 or F32 tensor as a fresh float32 array, row-major. */
  async readFloat32(name: string): Promise<Float32Array> {
    const t = this.tensor(name);
    if (t.dtype !== 'BF16' && t.dtype !== 'F16' && t.dtype !== 'F32') {
      throw new Error(`${this.path}: tensor ${name} has dtype ${t.dtype}, expected BF16, F16 or F32`);
    }
    return toFloat32(t.dtype, await this.readRaw(name));
  }

  tensor(name: string): SafetensorsTensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`${this.path}: no tensor ${name}`);
    return t;
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    await fh?.close();
  }
}

/** Reads exactly buf.length bytes at `position`; a short read means the file is truncated. */
async function readExactly(fh: FileHandle, buf: Uint8Array, position: number, file: string, what: string): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) {
      throw new Error(`${file}: ${what} is truncated (read ${done} of ${buf.length} bytes at offset ${position})`);
    }
    done += bytesRead;
  }
}

function parseHeader(
  header: Record<string, unknown>,
  file: string,
  dataStart: number,
  dataSize: number,
): { tensors: Map<string, SafetensorsTensor>; metadata: Record<string, string> } {
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, SafetensorsTensor>();
  const spans: { name: string; begin: number; end: number }[] = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isObject(entry)) throw new Error(`${file}: __metadata__ is not an object`);
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') throw new Error(`${file}: __metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const where = `${file}: tensor ${name}`;
    if (!isObject(entry)) throw new Error(`${where}: header entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = entry;
    if (typeof dtype !== 'string' || !Object.prototype.hasOwnProperty.call(SAFETENSORS_DTYPES, dtype)) {
      throw new Error(`${where}: unknown dtype ${JSON.stringify(dtype)}`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new Error(`${where}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      throw new Error(`${where}: data_offsets ${JSON.stringify(offsets)} is not a [begin, end] pair with begin <= end`);
    }
    const [begin, end] = offsets as [number, number];
    const elems = (shape as number[]).reduce((a, b) => a * b, 1);
    const nbytes = elems * SAFETENSORS_DTYPES[dtype as SafetensorsDtype];
    if (!Number.isSafeInteger(nbytes) || end - begin !== nbytes) {
      throw new Error(`${where}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype} [${shape.join(', ')}] needs ${nbytes}`);
    }
    if (end > dataSize) {
      throw new Error(`${where}: data ends at byte ${dataStart + end} but the file has ${dataStart + dataSize} bytes (truncated file?)`);
    }
    tensors.set(name, { name, dtype: dtype as SafetensorsDtype, shape: shape as number[], file, offset: dataStart + begin, nbytes });
    spans.push({ name, begin, end });
  }
  // The format requires the tensors to cover the data buffer exactly: a gap or an
  // overlap means a damaged or hand-edited file.
  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const s of spans) {
    if (s.begin < at) throw new Error(`${file}: tensor ${s.name} overlaps the tensor before it (bytes ${s.begin} < ${at})`);
    if (s.begin > at) throw new Error(`${file}: tensor ${s.name} starts at data byte ${s.begin}, leaving a gap after byte ${at}`);
    at = s.end;
  }
  if (at !== dataSize) throw new Error(`${file}: ${dataSize - at} bytes follow the last tensor`);
  return { tensors, metadata };
}

/** A checkpoint of one or more safetensors files, addressed by tensor name. */
export class SafetensorsCheckpoint {
  private constructor(
    /** The files, in index order (one for an unsharded checkpoint). */
    readonly files: readonly SafetensorsFile[],
    readonly tensors: ReadonlyMap<string, SafetensorsTensor>,
    /** The index file, when the checkpoint is sharded. */
    readonly indexPath: string | undefined,
  ) {}

  /**
   * Opens `dir/model.safetensors.index.json` and every shard it names, or else
   * `dir/model.safetensors`. Checks that each indexed tensor is in its shard, that no
   * shard holds an unindexed tensor, and the index's total_size when present.
   */
  static async open(dir: string): Promise<SafetensorsCheckpoint> {
    const indexPath = path.join(dir, 'model.safetensors.index.json');
    let indexText: string | undefined;
    try {
      indexText = await readFile(indexPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${indexPath}: cannot read (${(err as Error).message})`);
    }
    if (indexText === undefined) {
      const single = path.join(dir, 'model.safetensors');
      if (!(await stat(single).catch(() => null))) {
        throw new Error(`${dir}: no model.safetensors.index.json or model.safetensors found`);
      }
      const f = await SafetensorsFile.open(single);
      return new SafetensorsCheckpoint([f], f.tensors, undefined);
    }
    return SafetensorsCheckpoint.openIndex(dir, indexPath, indexText);
  }

  private static async openIndex(dir: string, indexPath: string, text: string): Promise<SafetensorsCheckpoint> {
    let index: unknown;
    try {
      index = JSON.parse(text);
    } catch (err) {
      throw new Error(`${indexPath}: not valid JSON (${(err as Error).message})`);
    }
    if (!isObject(index) || !isObject(index.weight_map)) throw new Error(`${indexPath}: missing the weight_map object`);
    const shardNames: string[] = [];
    for (const [name, shard] of Object.entries(index.weight_map)) {
      if (typeof shard !== 'string' || shard.length === 0 || path.basename(shard) !== shard) {
        throw new Error(`${indexPath}: tensor ${name} maps to ${JSON.stringify(shard)}, not a file name in the same folder`);
      }
      if (!shardNames.includes(shard)) shardNames.push(shard);
    }
    shardNames.sort();
    const files: SafetensorsFile[] = [];
    try {
      for (const s of shardNames) {
        const file = path.join(dir, s);
        if (!(await stat(file).catch(() => null))) {
          const held = Object.keys(index.weight_map).filter((n) => (index.weight_map as Record<string, string>)[n] === s);
          throw new Error(
            `${file}: file not found; ${path.basename(indexPath)} places ${held.length} tensor(s) there (${held.slice(0, 3).join(', ')}${held.length > 3 ? ', ...' : ''})`,
          );
        }
        files.push(await SafetensorsFile.open(file));
      }
      const byName = new Map(files.map((f) => [path.basename(f.path), f]));
      const tensors = new Map<string, SafetensorsTensor>();
      for (const [name, shard] of Object.entries(index.weight_map as Record<string, string>)) {
        const f = byName.get(shard)!;
        const t = f.tensors.get(name);
        if (!t) throw new Error(`${f.path}: no tensor ${name}, which ${path.basename(indexPath)} places in this file`);
        tensors.set(name, t);
      }
      let total = 0;
      for (const f of files) {
        for (const t of f.tensors.values()) {
          if (tensors.get(t.name) !== t) throw new Error(`${f.path}: tensor ${t.name} is not in ${path.basename(indexPath)}'s weight_map for this file`);
          total += t.nbytes;
        }
      }
      const declared = isObject(index.metadata) ? index.metadata.total_size : undefined;
      if (declared !== undefined && declared !== total) {
        throw new Error(`${indexPath}: metadata.total_size is ${String(declared)} but the shards hold ${total} bytes of tensors`);
      }
      return new SafetensorsCheckpoint(files, tensors, indexPath);
    } catch (err) {
      await Promise.all(files.map((f) => f.close().catch(() => {})));
      throw err;
    }
  }

  tensor(name: string): SafetensorsTensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`${this.indexPath ?? this.files[0]!.path}: no tensor ${name}`);
    return t;
  }

  private fileOf(name: string): SafetensorsFile {
    const t = this.tensor(name);
    return this.files.find((f) => f.path === t.file)!;
  }

  /** One BF16, F16 or F32 tensor as a fresh float32 array; errors name the shard and the tensor. */
  readFloat32(name: string): Promise<Float32Array> {
    return this.fileOf(name).readFloat32(name);
  }

  readRaw(name: string): Promise<Uint8Array> {
    return this.fileOf(name).readRaw(name);
  }

  async close(): Promise<void> {
    await Promise.all(this.files.map((f) => f.close()));
  }
}
