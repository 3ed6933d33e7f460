// The tokenizer.model (ModelProto) reader against what SentencePiece itself
// reports for the fixture model (model-dump.json, from tools/reference/make_tokenizer.py),
// and its errors on malformed input.
import { readFileSync } from 'node:fs';
import t from 'tap';

import { parseSentencePieceModel } from '../lib/convert/sentencepiece.js';

const dir = new URL('./fixtures/tokenizer/', import.meta.url);
const modelBytes = new Uint8Array(readFileSync(new URL('tiny-sp.model', dir)));
interface Dump {
  pieceCount: number;
  modelType: string;
  unkId: number;
  bosId: number;
  eosId: number;
  padId: number;
  byteFallback: boolean;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  normalizerName: string;
  pieces: { id: number; piece: string; score: number; type: number }[];
}
const dump = JSON.parse(readFileSync(new URL('model-dump.json', dir), 'utf8')) as Dump;

// Protobuf encoding helpers for hand-made inputs.
function varint(v: bigint): number[] {
  let x = BigInt.asUintN(64, v);
  const out: number[] = [];
  do {
    const b = Number(x & 0x7fn);
    x >>= 7n;
    out.push(x ? b | 0x80 : b);
  } while (x);
  return out;
}
const tag = (field: number, wire: number): number[] => varint(BigInt((field << 3) | wire));
const bytesField = (field: number, payload: number[]): number[] => [...tag(field, 2), ...varint(BigInt(payload.length)), ...payload];
const strField = (field: number, s: string): number[] => bytesField(field, [...Buffer.from(s, 'utf8')]);
const intField = (field: number, v: number): number[] => [...tag(field, 0), ...varint(BigInt(v))];
const floatField = (field: number, v: number): number[] => {
  const b = Buffer.alloc(4);
  b.writeFloatLE(v);
  return [...tag(field, 5), ...b];
};

t.test('reads the fixture model as SentencePiece reports it', async (t) => {
  const m = parseSentencePieceModel(modelBytes, 'tiny-sp.model');
  t.equal(m.pieces.length, dump.pieceCount);
  t.equal(m.modelType, dump.modelType);
  t.equal(m.unkId, dump.unkId);
  t.equal(m.bosId, dump.bosId);
  t.equal(m.eosId, dump.eosId);
  t.equal(m.padId, dump.padId);
  t.equal(m.byteFallback, dump.byteFallback);
  t.equal(m.addDummyPrefix, dump.addDummyPrefix);
  t.equal(m.removeExtraWhitespaces, dump.removeExtraWhitespaces);
  t.equal(m.normalizerName, dump.normalizerName);
  t.ok(dump.pieces.length > 300);
  let mismatches = 0;
  for (const p of dump.pieces) {
    const got = m.pieces[p.id];
    if (!got || got.piece !== p.piece || got.score !== p.score || got.type !== p.type) {
      mismatches++;
      t.fail(`piece ${p.id}: got ${JSON.stringify(got)}, want ${JSON.stringify(p)}`);
    }
  }
  t.equal(mismatches, 0, `all ${dump.pieces.length} dumped pieces match`);
  // The layout LLaMA's vocabulary has too: specials, then the 256 byte pieces.
  t.same(m.pieces.slice(0, 4), [
    { piece: '<unk>', score: 0, type: 2 },
    { piece: '<s>', score: 0, type: 3 },
    { piece: '</s>', score: 0, type: 3 },
    { piece: '<0x00>', score: 0, type: 6 },
  ]);
  t.equal(m.pieces[258]?.piece, '<0xFF>');
});

t.test('applies proto2 defaults and reads negative int32 values', async (t) => {
  const m = parseSentencePieceModel(
    new Uint8Array([...bytesField(1, strField(1, 'a')), ...bytesField(1, [...strField(1, 'b'), ...floatField(2, -1.5), ...intField(3, 4)]), ...bytesField(1, [])]),
  );
  t.same(m.pieces, [
    { piece: 'a', score: 0, type: 1 },
    { piece: 'b', score: -1.5, type: 4 },
    { piece: '', score: 0, type: 1 },
  ]);
  t.equal(m.modelType, 'unigram');
  t.same([m.unkId, m.bosId, m.eosId, m.padId], [0, 1, 2, -1]);
  t.same([m.byteFallback, m.addDummyPrefix, m.removeExtraWhitespaces, m.normalizerName], [false, true, true, '']);

  const trainer = bytesField(2, [...intField(3, 2), ...intField(40, 1), ...intField(41, -1), ...intField(42, 0), ...intField(43, -1), ...intField(35, 1), ...strField(1, 'skipped'), ...tag(16, 1), 1, 2, 3, 4, 5, 6, 7, 8]);
  const normalizer = bytesField(3, [...strField(1, 'identity'), ...bytesField(2, [1, 2, 3]), ...intField(3, 0), ...intField(4, 0)]);
  const n = parseSentencePieceModel(new Uint8Array([...trainer, ...bytesField(1, strField(1, 'x')), ...bytesField(1, strField(1, 'y')), ...normalizer, ...floatField(99, 1)]));
  t.equal(n.modelType, 'bpe');
  t.same([n.unkId, n.bosId, n.eosId, n.padId], [1, -1, 0, -1]);
  t.same([n.byteFallback, n.addDummyPrefix, n.removeExtraWhitespaces, n.normalizerName], [true, false, false, 'identity']);
});

t.test('malformed input throws an error naming the file', async (t) => {
  const bad = (bytes: number[] | Uint8Array, message: string): void => {
    t.throws(() => parseSentencePieceModel(new Uint8Array(bytes), 'x.model'), { message }, message);
  };
  bad([], 'x.model: the file is empty, not a SentencePiece model');
  bad([0x0a, 0x80], 'x.model: truncated varint at byte 1 (in ModelProto)');
  bad([0x0a, 0x05, 0x0a, 0x01], 'x.model: length 5 runs past the end at byte 1 (in ModelProto)');
  bad([0x0a, 0x04, 0x0a, 0x05, 0x61, 0x62], 'x.model: length 5 runs past the end at byte 3 (in piece 0)');
  bad([0x08, 0x01], 'x.model: field 1 (pieces) has wire type varint, expected length-delimited at byte 0 (in ModelProto)');
  bad([0x0a, 0x02, 0x15, 0x00], 'x.model: truncated 32-bit value at byte 3 (in piece 0)');
  bad([0x0a, 0x02, 0x10, 0x01], 'x.model: field 2 (score) has wire type varint, expected 32-bit at byte 2 (in piece 0)');
  bad([0x2b], 'x.model: field 5 has unsupported wire type start-group at byte 0 (in ModelProto)');
  bad([0x0b], 'x.model: field 1 (pieces) has wire type start-group, expected length-delimited at byte 0 (in ModelProto)');
  bad([0x00], 'x.model: invalid field number at byte 0 (in ModelProto)');
  bad([0x0a, 0x03, 0x0a, 0x01, 0xff], 'x.model: piece 0 is not valid UTF-8 at byte 4 (in piece 0)');
  bad([0x0a, 0x02, 0x18, 0x09], 'x.model: piece 0 has unknown type 9 at byte 2 (in piece 0)');
  // Found by the property test (test/property-parsers.test.ts): a NaN score used to parse.
  bad([0x0a, 0x05, 0x15, 0x00, 0x00, 0xc0, 0x7f], 'x.model: piece 0 has a non-finite score (NaN) at byte 2 (in piece 0)');
  bad([0x0a, 0x05, 0x15, 0x00, 0x00, 0x80, 0xff], 'x.model: piece 0 has a non-finite score (-Infinity) at byte 2 (in piece 0)');
  bad([...bytesField(1, []), ...bytesField(2, intField(3, 7))], 'x.model: unknown model_type 7 at byte 4 (in trainer_spec)');
  bad(bytesField(3, strField(1, 'nmt_nfkc')), 'x.model: the model has no pieces, not a SentencePiece model');
  bad([...bytesField(1, []), ...bytesField(2, intField(41, 5))], 'x.model: bos_id 5 is outside the vocabulary (1 pieces)');
  bad([0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 'x.model: varint longer than 10 bytes at byte 1 (in ModelProto)');
});

t.test('truncated and corrupted copies of the fixture fail cleanly', async (t) => {
  // Cut inside the last field: always an error.
  t.throws(() => parseSentencePieceModel(modelBytes.subarray(0, modelBytes.length - 1), 'tiny-sp.model'), /^tiny-sp\.model: .* runs past the end at byte \d+/);
  // Any cut or flipped byte must give either a model or an Error naming the
  // file; never a TypeError/RangeError from reading out of bounds.
  let threw = 0;
  let tried = 0;
  const check = (bytes: Uint8Array): void => {
    tried++;
    try {
      parseSentencePieceModel(bytes, 'tiny-sp.model');
    } catch (e) {
      threw++;
      if (!(e instanceof Error) || e.constructor !== Error || !e.message.startsWith('tiny-sp.model: ')) t.fail(`unexpected error: ${String(e)}`);
    }
  };
  for (let cut = 1; cut < modelBytes.length; cut += 97) check(modelBytes.subarray(0, cut));
  let seed = 12345;
  for (let i = 0; i < 300; i++) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    const copy = modelBytes.slice();
    copy[seed % copy.length] ^= 1 << (seed % 8);
    check(copy);
  }
  t.ok(threw > tried / 10, `${threw} of ${tried} damaged copies were rejected`);
});
