// Builds the tiny LLaMA test models as GGUF files: deterministic weights from
// prng-weights.ts plus the fixture SentencePiece vocabulary. The default dims are the
// model tools/reference/tiny_llama.py computes goldens for; other dims (e.g. the
// dim-256 K-quant model) reuse the same weight spec.

import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { GgufWriter } from '../../lib/convert/gguf-writer.js';
import { parseSentencePieceModel } from '../../lib/convert/sentencepiece.js';
import { addLlamaToGguf, recipes, type LlamaHParams, type Quantizer, type RecipeName, type Vocab } from '../../lib/convert/llama-gguf.js';
import { TINY_LLAMA_DIMS, tinyLlamaTensors, type TinyLlamaDims } from './prng-weights.js';

export const TINY_SP_MODEL = fileURLToPath(new URL('../fixtures/tokenizer/tiny-sp.model', import.meta.url));

/** The fixture tokenizer as a GGUF vocabulary. */
export async function loadTinyVocab(): Promise<Vocab> {
  const sp = parseSentencePieceModel(await readFile(TINY_SP_MODEL), TINY_SP_MODEL);
  return {
    pieces: sp.pieces.map((p) => ({ piece: p.piece, score: p.score, type: p.type })),
    bosId: sp.bosId,
    eosId: sp.eosId,
    unkId: sp.unkId,
    padId: sp.padId,
  };
}

/** Options of writeTinyLlama. */
export interface TinyLlamaOptions {
  /** Overrides of the golden model's dims; vocabSize always comes from the tokenizer (optional, default TINY_LLAMA_DIMS). */
  dims?: Partial<Omit<TinyLlamaDims, 'vocabSize'>>;
  /** Produces every non-f32 type (optional for the f32 recipe, required otherwise). */
  quantize?: Quantizer;
  /** general.name (optional, default "tiny-llama"). */
  name?: string;
}

/** Writes a tiny LLaMA GGUF stored per `recipe`; returns the hparams it used. */
export async function writeTinyLlama(path: string, recipe: RecipeName, opts: TinyLlamaOptions = {}): Promise<LlamaHParams> {
  const vocab = await loadTinyVocab();
  const hp: LlamaHParams = { ...TINY_LLAMA_DIMS, ...opts.dims, vocabSize: vocab.pieces.length };
  const quantize: Quantizer =
    opts.quantize ??
    ((type) => {
      throw new Error(`writeTinyLlama: recipe ${recipe} needs a quantizer for ${type}`);
    });
  const w = new GgufWriter();
  addLlamaToGguf(w, hp, vocab, tinyLlamaTensors(hp), { ...recipes[recipe], quantize, name: opts.name ?? 'tiny-llama' });
  await w.write(path);
  return hp;
}
