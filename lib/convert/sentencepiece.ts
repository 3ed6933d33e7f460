// sentencepiece.ts - reads a SentencePiece `tokenizer.model` (a serialized
// sentencepiece.ModelProto) with a small protobuf wire-format reader, no dependency.
//
// The fields read (sentencepiece_model.proto, proto2):
//   ModelProto       1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec
//   SentencePiece    1 piece (string), 2 score (float), 3 type (enum, default NORMAL = 1)
//   TrainerSpec      3 model_type (UNIGRAM = 1, BPE, WORD, CHAR), 35 byte_fallback,
//                    40 unk_id (default 0), 41 bos_id (1), 42 eos_id (2), 43 pad_id (-1)
//   NormalizerSpec   1 name, 3 add_dummy_prefix (default true), 4 remove_extra_whitespaces (true)
// Every other field is skipped by wire type, as protobuf readers do.

/** A parsed SentencePiece model: the piece table and the settings that decide how text is tokenized. */
export interface SentencePieceModel {
  /** Pieces in id order; `type` is SentencePiece's enum (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte). */
  pieces: { piece: string; score: number; type: number }[];
  /** The segmentation algorithm (optional in the file, default 'unigram'). */
  modelType: 'unigram' | 'bpe' | 'word' | 'char';
  /** Id of <unk> (optional in the file, default 0). */
  unkId: number;
  /** Id of <s> (optional in the file, default 1; -1 when disabled). */
  bosId: number;
  /** Id of </s> (optional in the file, default 2; -1 when disabled). */
  eosId: number;
  /** Id of <pad> (optional in the file, default -1: none). */
  padId: number;
  /** Whether unknown characters are spelled with <0xXX> byte pieces (optional in the file, default false). */
  byteFallback: boolean;
  /** Whether "▁" is put before the text (optional in the file, default true). */
  addDummyPrefix: boolean;
  /** Whether runs of spaces are squeezed and trimmed (optional in the file, default true). */
  removeExtraWhitespaces: boolean;
  /** The normalization rule, e.g. 'identity' or 'nmt_nfkc' (optional in the file, default ''). */
  normalizerName: string;
}

const MODEL_TYPES = ['unigram', 'bpe', 'word', 'char'] as const;

// Wire types of protobuf's encoding (3 and 4, groups, are long deprecated).
const Wire = { Varint: 0, Fixed64: 1, Bytes: 2, Fixed32: 5 } as const;
const WIRE_NAMES: Record<number, string> = { 0: 'varint', 1: '64-bit', 2: 'length-delimited', 3: 'start-group', 4: 'end-group', 5: '32-bit' };

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** One message's bytes, [pos, end) of the whole buffer, so offsets in errors are file offsets. */
class Reader {
  pos: number;

  constructor(
    private readonly buf: Uint8Array,
    private readonly view: DataView,
    start: number,
    readonly end: number,
    private readonly file: string,
    readonly message: string,
  ) {
    this.pos = start;
  }

  fail(what: string, at = this.pos): never {
    throw new Error(`${this.file}: ${what} at byte ${at} (in ${this.message})`);
  }

  done(): boolean {
    return this.pos >= this.end;
  }

  /** A varint as its low and high 32-bit halves (protobuf varints are up to 64 bits). */
  varint(): { lo: number; hi: number } {
    const start = this.pos;
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail('truncated varint', start);
      const b = this.buf[this.pos++]!;
      const bits = b & 0x7f;
      if (i < 4) lo |= bits << (7 * i);
      else if (i === 4) {
        lo |= (bits & 0x0f) << 28;
        hi |= bits >> 4;
      } else hi |= bits << (7 * i - 32);
      if ((b & 0x80) === 0) return { lo: lo >>> 0, hi: hi >>> 0 };
    }
    return this.fail('varint longer than 10 bytes', start);
  }

  /** int32 and enum fields: negative values are sign-extended to 64 bits on the wire. */
  int32(): number {
    return this.varint().lo | 0;
  }

  bool(): boolean {
    const v = this.varint();
    return v.lo !== 0 || v.hi !== 0;
  }

  float32(): number {
    if (this.end - this.pos < 4) this.fail('truncated 32-bit value');
    const v = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /** The [start, end) of a length-delimited field's payload. */
  lengthDelimited(): { start: number; end: number } {
    const at = this.pos;
    const { lo, hi } = this.varint();
    if (hi !== 0 || lo > this.end - this.pos) this.fail(`length ${hi ? 'over 2^32' : lo} runs past the end`, at);
    const start = this.pos;
    this.pos += lo;
    return { start, end: this.pos };
  }

  string(field: string): string {
    const { start, end } = this.lengthDelimited();
    try {
      return utf8.decode(this.buf.subarray(start, end));
    } catch {
      return this.fail(`${field} is not valid UTF-8`, start);
    }
  }

  sub(message: string): Reader {
    const { start, end } = this.lengthDelimited();
    return new Reader(this.buf, this.view, start, end, this.file, message);
  }

  /** The next field's number and wire type. */
  tag(): { field: number; wire: number; at: number } {
    const at = this.pos;
    const { lo, hi } = this.varint();
    const field = lo >>> 3;
    if (hi !== 0 || field === 0) this.fail('invalid field number', at);
    return { field, wire: lo & 7, at };
  }

  expect(t: { field: number; wire: number; at: number }, wire: number, name: string): void {
    if (t.wire !== wire)
      this.fail(`field ${t.field} (${name}) has wire type ${WIRE_NAMES[t.wire] ?? t.wire}, expected ${WIRE_NAMES[wire]}`, t.at);
  }

  skip(t: { field: number; wire: number; at: number }): void {
    switch (t.wire) {
      case Wire.Varint:
        this.varint();
        return;
      case Wire.Fixed64:
        if (this.end - this.pos < 8) this.fail('truncated 64-bit value');
        this.pos += 8;
        return;
      case Wire.Bytes:
        this.lengthDelimited();
        return;
      case Wire.Fixed32:
        if (this.end - this.pos < 4) this.fail('truncated 32-bit value');
        this.pos += 4;
        return;
      default:
        this.fail(`field ${t.field} has unsupported wire type ${WIRE_NAMES[t.wire] ?? t.wire}`, t.at);
    }
  }
}

function readPiece(r: Reader, index: number): { piece: string; score: number; type: number } {
  const p = { piece: '', score: 0, type: 1 };
  while (!r.done()) {
    const t = r.tag();
    if (t.field === 1) {
      r.expect(t, Wire.Bytes, 'piece');
      p.piece = r.string(`piece ${index}`);
    } else if (t.field === 2) {
      r.expect(t, Wire.Fixed32, 'score');
      p.score = r.float32();
      // Found by fuzzing: a NaN or infinite score parsed, then broke the unigram search.
      if (!Number.isFinite(p.score)) r.fail(`piece ${index} has a non-finite score (${p.score})`, t.at);
    } else if (t.field === 3) {
      r.expect(t, Wire.Varint, 'type');
      p.type = r.int32();
      if (p.type < 1 || p.type > 6) r.fail(`piece ${index} has unknown type ${p.type}`, t.at);
    } else r.skip(t);
  }
  return p;
}

/**
 * Parses the bytes of a SentencePiece `tokenizer.model`. Throws an Error whose
 * message starts with `fileName` and says what is wrong when the bytes are not a
 * well-formed ModelProto with at least one piece.
 */
export function parseSentencePieceModel(bytes: Uint8Array, fileName = 'tokenizer.model'): SentencePieceModel {
  if (bytes.length === 0) throw new Error(`${fileName}: the file is empty, not a SentencePiece model`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const model: SentencePieceModel = {
    pieces: [],
    modelType: 'unigram',
    unkId: 0,
    bosId: 1,
    eosId: 2,
    padId: -1,
    byteFallback: false,
    addDummyPrefix: true,
    removeExtraWhitespaces: true,
    normalizerName: '',
  };
  const top = new Reader(bytes, view, 0, bytes.length, fileName, 'ModelProto');
  while (!top.done()) {
    const t = top.tag();
    if (t.field === 1) {
      top.expect(t, Wire.Bytes, 'pieces');
      model.pieces.push(readPiece(top.sub(`piece ${model.pieces.length}`), model.pieces.length));
    } else if (t.field === 2) {
      top.expect(t, Wire.Bytes, 'trainer_spec');
      const r = top.sub('trainer_spec');
      while (!r.done()) {
        const f = r.tag();
        const int = (name: string): number => (r.expect(f, Wire.Varint, name), r.int32());
        switch (f.field) {
          case 3: {
            const v = int('model_type');
            const name = MODEL_TYPES[v - 1];
            if (!name) r.fail(`unknown model_type ${v}`, f.at);
            model.modelType = name;
            break;
          }
          case 35:
            r.expect(f, Wire.Varint, 'byte_fallback');
            model.byteFallback = r.bool();
            break;
          case 40: model.unkId = int('unk_id'); break;
          case 41: model.bosId = int('bos_id'); break;
          case 42: model.eosId = int('eos_id'); break;
          case 43: model.padId = int('pad_id'); break;
          default: r.skip(f);
        }
      }
    } else if (t.field === 3) {
      top.expect(t, Wire.Bytes, 'normalizer_spec');
      const r = top.sub('normalizer_spec');
      while (!r.done()) {
        const f = r.tag();
        if (f.field === 1) {
          r.expect(f, Wire.Bytes, 'name');
          model.normalizerName = r.string('normalizer name');
        } else if (f.field === 3) {
          r.expect(f, Wire.Varint, 'add_dummy_prefix');
          model.addDummyPrefix = r.bool();
        } else if (f.field === 4) {
          r.expect(f, Wire.Varint, 'remove_extra_whitespaces');
          model.removeExtraWhitespaces = r.bool();
        } else r.skip(f);
      }
    } else top.skip(t);
  }
  if (model.pieces.length === 0) throw new Error(`${fileName}: the model has no pieces, not a SentencePiece model`);
  for (const [name, id] of [['unk_id', model.unkId], ['bos_id', model.bosId], ['eos_id', model.eosId], ['pad_id', model.padId]] as const) {
    if (id < -1 || id >= model.pieces.length)
      throw new Error(`${fileName}: ${name} ${id} is outside the vocabulary (${model.pieces.length} pieces)`);
  }
  return model;
}
