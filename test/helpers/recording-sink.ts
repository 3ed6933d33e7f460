// A stand-in for GgufWriter that records what addLlamaToGguf asks of it, so tests
// can inspect keys and tensor bytes without writing or parsing a file.

import type { GgmlTypeName } from '../../lib/convert/gguf-writer.js';
import type { GgufSink } from '../../lib/convert/llama-gguf.js';

export interface RecordedKey {
  type: string;
  value: number | boolean | string | (number | string)[];
}

export interface RecordedTensor {
  ne: number[];
  type: GgmlTypeName;
  data: () => Promise<Uint8Array>;
}

export class RecordingSink implements GgufSink {
  readonly keys = new Map<string, RecordedKey>();
  readonly tensors = new Map<string, RecordedTensor>();

  set(key: string, type: string, value: number | boolean | string): this {
    if (this.keys.has(key)) throw new Error(`key ${key} set twice`);
    this.keys.set(key, { type, value });
    return this;
  }

  setArray(key: string, elemType: string, values: ArrayLike<number> | ArrayLike<string>): this {
    if (this.keys.has(key)) throw new Error(`key ${key} set twice`);
    this.keys.set(key, { type: `${elemType}[]`, value: Array.from(values as ArrayLike<number | string>) });
    return this;
  }

  addTensor(name: string, ne: number[], type: GgmlTypeName, data: () => Promise<Uint8Array>): this {
    if (this.tensors.has(name)) throw new Error(`tensor ${name} added twice`);
    this.tensors.set(name, { ne, type, data });
    return this;
  }

  /** The value of a key, or an error naming it. */
  value(key: string): RecordedKey['value'] {
    const k = this.keys.get(key);
    if (!k) throw new Error(`key ${key} was not set`);
    return k.value;
  }

  /** The bytes of an f32 tensor as floats. */
  async f32(name: string): Promise<Float32Array> {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`tensor ${name} was not added`);
    if (t.type !== 'f32') throw new Error(`tensor ${name} is ${t.type}, not f32`);
    const bytes = await t.data();
    return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  }
}
