// gguf-writer.ts - writes GGUF v3 files (little-endian), streaming tensor data one
// tensor at a time so a converter never holds a whole model in memory.
//
// File layout (the C++ reader, native/engine/format/gguf.h, documents the same):
//   1. magic "GGUF", version u32 = 3, tensor_count u64, kv_count u64
//   2. key/value pairs in insertion order: key string, value type u32, value
//      (string = u64 byte length + UTF-8; array = elem type u32 + u64 count + elements)
//   3. tensor infos in insertion order: name, n_dims u32, ne u64[n_dims], type u32, offset u64
//   4. zero padding up to a multiple of the alignment
//   5. tensor data, each tensor at an aligned offset, each followed by zero padding

import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';

export type GgufValueType = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'u64' | 'i64' | 'f32' | 'f64' | 'bool' | 'string';
export type GgmlTypeName = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0' | 'q4_k' | 'q6_k';

/** ggml's type id, elements per block and bytes per block for each tensor type. */
export const GGML_TYPES: Record<GgmlTypeName, { id: number; blockSize: number; blockBytes: number }> = {
  f32: { id: 0, blockSize: 1, blockBytes: 4 },
  f16: { id: 1, blockSize: 1, blockBytes: 2 },
  q4_0: { id: 2, blockSize: 32, blockBytes: 18 },
  q8_0: { id: 8, blockSize: 32, blockBytes: 34 },
  q4_k: { id: 12, blockSize: 256, blockBytes: 144 },
  q6_k: { id: 14, blockSize: 256, blockBytes: 210 },
  bf16: { id: 30, blockSize: 1, blockBytes: 2 },
};

/** GGUF metadata value type ids. */
const VALUE_TYPE_ID: Record<GgufValueType, number> = {
  u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, u64: 10, i64: 11, f64: 12,
};
const ARRAY_TYPE_ID = 9;

/** Byte size of fixed-size value types. */
const VALUE_SIZE: Record<Exclude<GgufValueType, 'string'>, number> = {
  u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, bool: 1, u64: 8, i64: 8, f64: 8,
};

/** Inclusive ranges of the integer types up to 32 bits. */
const INT_RANGE: Partial<Record<GgufValueType, [number, number]>> = {
  u8: [0, 0xff], i8: [-0x80, 0x7f], u16: [0, 0xffff], i16: [-0x8000, 0x7fff],
  u32: [0, 0xffffffff], i32: [-0x80000000, 0x7fffffff],
};

const DEFAULT_ALIGNMENT = 32;
const MAX_TENSOR_NAME_BYTES = 63; // llama.cpp's limit (64 with its terminator)
const CHUNK_BYTES = 16 << 20; // write buffer; tensors at least this big go straight through

/** Bytes of a tensor of type `type` and shape `ne` (ggml order). Throws if ne[0] is not a whole number of blocks. */
export function tensorBytes(type: GgmlTypeName, ne: readonly number[]): number {
  if (!Object.prototype.hasOwnProperty.call(GGML_TYPES, type)) throw new TypeError(`unknown tensor type ${String(type)}`);
  const t = GGML_TYPES[type];
  if (ne.length < 1 || ne.length > 4) throw new RangeError(`tensor needs 1 to 4 dimensions, got ${ne.length}`);
  for (const n of ne) {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`tensor dimension ${String(n)} is not a non-negative integer`);
  }
  const ne0 = ne[0]!;
  if (ne0 % t.blockSize !== 0) {
    throw new RangeError(`row length ${ne0} is not a multiple of ${type}'s block size ${t.blockSize}`);
  }
  let bytes = (ne0 / t.blockSize) * t.blockBytes;
  for (let i = 1; i < ne.length; i++) bytes *= ne[i]!;
  if (!Number.isSafeInteger(bytes)) throw new RangeError(`tensor of shape [${ne.join(', ')}] is too large`);
  return bytes;
}

type TensorData = Uint8Array | (() => Uint8Array | Promise<Uint8Array>);

interface TensorEntry {
  name: string;
  ne: number[];
  type: GgmlTypeName;
  nbytes: number;
  data: TensorData;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && n <= 0x80000000 && (n & (n - 1)) === 0;
}

function utf8(s: string, what: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  // Lone surrogates would silently become U+FFFD; refuse them instead.
  if (b.toString('utf8') !== s) throw new TypeError(`${what} is not valid Unicode (lone surrogate)`);
  return b;
}

/** Checks `value` fits `type` and returns it as the form its encoder takes. */
function checkScalar(type: GgufValueType, value: unknown, what: string): number | bigint | boolean | string {
  switch (type) {
    case 'bool':
      if (typeof value !== 'boolean') throw new TypeError(`${what}: expected a boolean for bool, got ${typeof value}`);
      return value;
    case 'string':
      if (typeof value !== 'string') throw new TypeError(`${what}: expected a string, got ${typeof value}`);
      return value;
    case 'f32':
    case 'f64':
      if (typeof value !== 'number') throw new TypeError(`${what}: expected a number for ${type}, got ${typeof value}`);
      if (type === 'f32' && Number.isFinite(value) && !Number.isFinite(Math.fround(value))) {
        throw new RangeError(`${what}: ${value} is out of range for f32`);
      }
      return value;
    case 'u64':
    case 'i64': {
      let v: bigint;
      if (typeof value === 'bigint') v = value;
      else if (typeof value === 'number' && Number.isSafeInteger(value)) v = BigInt(value);
      else throw new TypeError(`${what}: expected a safe integer or bigint for ${type}, got ${String(value)}`);
      const [lo, hi] = type === 'u64' ? [0n, (1n << 64n) - 1n] : [-(1n << 63n), (1n << 63n) - 1n];
      if (v < lo || v > hi) throw new RangeError(`${what}: ${v} is out of range for ${type}`);
      return v;
    }
    default: {
      const range = INT_RANGE[type];
      if (!range) throw new TypeError(`${what}: unknown GGUF value type ${String(type)}`);
      let v: number;
      if (typeof value === 'number' && Number.isInteger(value)) v = value;
      else if (typeof value === 'bigint') v = Number(value);
      else throw new TypeError(`${what}: expected an integer for ${type}, got ${String(value)}`);
      if (v < range[0] || v > range[1] || (typeof value === 'bigint' && BigInt(v) !== value)) {
        throw new RangeError(`${what}: ${String(value)} is out of range for ${type}`);
      }
      return v;
    }
  }
}

/** Writes one checked fixed-size scalar at `off`; returns the next offset. */
function putScalar(buf: Buffer, off: number, type: Exclude<GgufValueType, 'string'>, v: number | bigint | boolean): number {
  switch (type) {
    case 'u8': return buf.writeUInt8(v as number, off);
    case 'i8': return buf.writeInt8(v as number, off);
    case 'u16': return buf.writeUInt16LE(v as number, off);
    case 'i16': return buf.writeInt16LE(v as number, off);
    case 'u32': return buf.writeUInt32LE(v as number, off);
    case 'i32': return buf.writeInt32LE(v as number, off);
    case 'u64': return buf.writeBigUInt64LE(v as bigint, off);
    case 'i64': return buf.writeBigInt64LE(v as bigint, off);
    case 'f32': return buf.writeFloatLE(v as number, off);
    case 'f64': return buf.writeDoubleLE(v as number, off);
    case 'bool': return buf.writeUInt8(v ? 1 : 0, off);
  }
}

function encodeString(b: Buffer): Buffer {
  const out = Buffer.alloc(8 + b.length);
  out.writeBigUInt64LE(BigInt(b.length), 0);
  b.copy(out, 8);
  return out;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n, 0);
  return b;
}

function u64(n: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n), 0);
  return b;
}

/** Encodes a scalar value (without its type tag). */
function encodeScalar(type: GgufValueType, value: unknown, what: string): Buffer {
  const v = checkScalar(type, value, what);
  if (type === 'string') return encodeString(utf8(v as string, what));
  const buf = Buffer.alloc(VALUE_SIZE[type]);
  putScalar(buf, 0, type, v as number | bigint | boolean);
  return buf;
}

/** Buffered sequential writer over a file handle. */
class ChunkedFile {
  private buf = Buffer.alloc(CHUNK_BYTES);
  private used = 0;
  written = 0; // bytes accepted so far (buffered or on disk)

  constructor(private readonly fh: FileHandle) {}

  async put(data: Uint8Array): Promise<void> {
    this.written += data.length;
    if (data.length >= CHUNK_BYTES) {
      await this.flush();
      await this.writeAll(data);
      return;
    }
    if (this.used + data.length > CHUNK_BYTES) await this.flush();
    this.buf.set(data, this.used);
    this.used += data.length;
  }

  async zeros(n: number): Promise<void> {
    if (n > 0) await this.put(new Uint8Array(n));
  }

  async flush(): Promise<void> {
    if (this.used > 0) await this.writeAll(this.buf.subarray(0, this.used));
    this.used = 0;
  }

  private async writeAll(data: Uint8Array): Promise<void> {
    let off = 0;
    while (off < data.length) {
      const { bytesWritten } = await this.fh.write(data, off, data.length - off);
      if (bytesWritten <= 0) throw new Error('write made no progress');
      off += bytesWritten;
    }
  }
}

/** Builds a GGUF file in memory (metadata) and streams its tensors to disk on write(). */
export class GgufWriter {
  private readonly kvs = new Map<string, Buffer>(); // key -> encoded entry (key, type, value)
  private readonly tensors: TensorEntry[] = [];
  private readonly tensorNames = new Set<string>();
  private readonly optionAlignment: number;

  /** `alignment`: data alignment in bytes, a power of two (optional, default 32). */
  constructor(options: { alignment?: number } = {}) {
    const a = options.alignment ?? DEFAULT_ALIGNMENT;
    if (!isPowerOfTwo(a)) throw new RangeError(`alignment must be a power of two up to 2^31, got ${String(a)}`);
    this.optionAlignment = a;
  }

  /** The alignment the file will use: general.alignment if set, else the constructor's. */
  get alignment(): number {
    const kv = this.kvs.get('general.alignment');
    return kv ? kv.readUInt32LE(kv.length - 4) : this.optionAlignment;
  }

  /** Sets a scalar metadata key. Throws if the key exists or the value does not fit `type`. */
  set(key: string, type: GgufValueType, value: number | bigint | boolean | string): this {
    const keyBytes = this.checkKey(key);
    if (!Object.prototype.hasOwnProperty.call(VALUE_TYPE_ID, type)) throw new TypeError(`${key}: unknown GGUF value type ${String(type)}`);
    if (key === 'general.alignment') {
      if (type !== 'u32') throw new TypeError(`general.alignment must be a u32, got ${type}`);
      if (typeof value !== 'number' || !isPowerOfTwo(value)) {
        throw new RangeError(`general.alignment must be a power of two, got ${String(value)}`);
      }
      if (this.optionAlignment !== DEFAULT_ALIGNMENT && value !== this.optionAlignment) {
        throw new RangeError(`general.alignment ${value} contradicts the writer's alignment option ${this.optionAlignment}`);
      }
    }
    const entry = Buffer.concat([encodeString(keyBytes), u32(VALUE_TYPE_ID[type]), encodeScalar(type, value, key)]);
    this.kvs.set(key, entry);
    return this;
  }

  /** Sets an array metadata key whose elements are all `elemType`. */
  setArray(key: string, elemType: GgufValueType, values: ArrayLike<number | bigint | boolean | string>): this {
    const keyBytes = this.checkKey(key);
    if (!Object.prototype.hasOwnProperty.call(VALUE_TYPE_ID, elemType)) throw new TypeError(`${key}: unknown GGUF value type ${String(elemType)}`);
    if (values == null || typeof values.length !== 'number') throw new TypeError(`${key}: values must be array-like`);
    const n = values.length;
    const head = Buffer.concat([encodeString(keyBytes), u32(ARRAY_TYPE_ID), u32(VALUE_TYPE_ID[elemType]), u64(n)]);
    let body: Buffer;
    if (elemType === 'string') {
      const parts: Buffer[] = [];
      for (let i = 0; i < n; i++) parts.push(encodeScalar('string', values[i], `${key}[${i}]`));
      body = Buffer.concat(parts);
    } else {
      const size = VALUE_SIZE[elemType];
      body = Buffer.alloc(n * size);
      for (let i = 0; i < n; i++) {
        const v = checkScalar(elemType, values[i], `${key}[${i}]`);
        putScalar(body, i * size, elemType, v as number | bigint | boolean);
      }
    }
    this.kvs.set(key, Buffer.concat([head, body]));
    return this;
  }

  setString(key: string, v: string): this {
    return this.set(key, 'string', v);
  }
  setU32(key: string, v: number): this {
    return this.set(key, 'u32', v);
  }
  setF32(key: string, v: number): this {
    return this.set(key, 'f32', v);
  }
  setBool(key: string, v: boolean): this {
    return this.set(key, 'bool', v);
  }

  /**
   * Adds a tensor. `ne` is in ggml order: ne[0] is the contiguous row length (PyTorch shape reversed).
   * `data` is the tensor's bytes already in `type`, or a function producing them when the writer reaches
   * this tensor. Its length is checked against tensorBytes().
   */
  addTensor(name: string, ne: readonly number[], type: GgmlTypeName, data: TensorData): this {
    if (typeof name !== 'string' || name.length === 0) throw new TypeError('tensor name must be a non-empty string');
    if (utf8(name, `tensor name ${name}`).length > MAX_TENSOR_NAME_BYTES) {
      throw new RangeError(`tensor name ${name} is longer than ${MAX_TENSOR_NAME_BYTES} bytes`);
    }
    if (this.tensorNames.has(name)) throw new Error(`duplicate tensor ${name}`);
    if (!Object.prototype.hasOwnProperty.call(GGML_TYPES, type)) throw new TypeError(`${name}: unknown tensor type ${String(type)}`);
    let nbytes: number;
    try {
      nbytes = tensorBytes(type, ne);
    } catch (e) {
      throw new RangeError(`${name}: ${(e as Error).message}`);
    }
    if (typeof data !== 'function') {
      if (!(data instanceof Uint8Array)) throw new TypeError(`${name}: data must be a Uint8Array or a function`);
      if (data.length !== nbytes) throw new RangeError(`${name}: data is ${data.length} bytes, expected ${nbytes}`);
    }
    this.tensorNames.add(name);
    this.tensors.push({ name, ne: [...ne], type, nbytes, data });
    return this;
  }

  /** The size of the file write() makes, in bytes (to tell how much space it needs). */
  get fileBytes(): number {
    return this.layout().total;
  }

  /** The encoded header, the padding rule and the total file size. */
  private layout(): { header: Buffer; pad: (n: number) => number; total: number } {
    const align = this.alignment;
    const pad = (n: number) => (align - (n % align)) % align;
    // The alignment key is only needed when it differs from the default.
    const kvs = [...this.kvs.values()];
    if (!this.kvs.has('general.alignment') && align !== DEFAULT_ALIGNMENT) {
      kvs.push(Buffer.concat([encodeString(Buffer.from('general.alignment')), u32(VALUE_TYPE_ID.u32), u32(align)]));
    }

    const infos: Buffer[] = [];
    let offset = 0;
    for (const t of this.tensors) {
      infos.push(encodeString(Buffer.from(t.name, 'utf8')), u32(t.ne.length));
      for (const n of t.ne) infos.push(u64(n));
      infos.push(u32(GGML_TYPES[t.type].id), u64(offset));
      offset += t.nbytes + pad(t.nbytes);
    }
    const fixed = Buffer.alloc(24);
    fixed.write('GGUF', 0, 'latin1');
    fixed.writeUInt32LE(3, 4);
    fixed.writeBigUInt64LE(BigInt(this.tensors.length), 8);
    fixed.writeBigUInt64LE(BigInt(kvs.length), 16);
    const header = Buffer.concat([fixed, ...kvs, ...infos]);
    const dataStart = header.length + pad(header.length);
    return { header, pad, total: dataStart + offset };
  }

  /**
   * Writes the whole file to `${path}.tmp-<pid>-<random>` and renames it into place; on any error the temp
   * file is removed and nothing appears at `path`. onProgress(bytesWritten, totalBytes, tensorName).
   */
  async write(path: string, onProgress?: (done: number, total: number, tensor: string) => void): Promise<void> {
    const { header, pad, total } = this.layout();

    const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
    let fh: FileHandle | undefined;
    try {
      fh = await open(tmp, 'wx');
      const out = new ChunkedFile(fh);
      await out.put(header);
      await out.zeros(pad(header.length));
      for (const t of this.tensors) {
        const bytes = typeof t.data === 'function' ? await t.data() : t.data;
        if (!(bytes instanceof Uint8Array)) throw new TypeError(`${t.name}: data producer did not return a Uint8Array`);
        if (bytes.length !== t.nbytes) {
          throw new RangeError(`${t.name}: data producer returned ${bytes.length} bytes, expected ${t.nbytes}`);
        }
        await out.put(bytes);
        await out.zeros(pad(t.nbytes));
        onProgress?.(out.written, total, t.name);
      }
      await out.flush();
      if (out.written !== total) throw new Error(`internal error: wrote ${out.written} bytes, planned ${total}`);
      await fh.sync(); // the data must be on disk before the rename makes it visible
      await fh.close();
      fh = undefined;
      await rename(tmp, path);
    } catch (e) {
      if (fh) await fh.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      throw e;
    }
  }

  private checkKey(key: string): Buffer {
    if (typeof key !== 'string' || key.length === 0) throw new TypeError('metadata key must be a non-empty string');
    if (this.kvs.has(key)) throw new Error(`duplicate metadata key ${key}`);
    const b = utf8(key, `metadata key ${key}`);
    if (b.length > 0xffff) throw new RangeError(`metadata key ${key.slice(0, 32)}... is longer than 65535 bytes`);
    return b;
  }
}
