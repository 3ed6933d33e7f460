/**
 * cxr-llava: CXR-LLaVA chest X-ray reports, locally, from Node.js.
 *
 * ```ts
 * import { loadModel } from 'cxr-llava';
 * const model = await loadModel({ model: 'cxr-llava-v2.q8_0.gguf' });
 * const { text } = await model.generate({ prompt: 'What is cardiomegaly?' });
 * await model.close();
 * ```
 */
export { loadModel, Model } from './model.js';
export type {
  LoadModelOptions,
  ModelInfo,
  Progress,
  TokenizeOptions,
  GenerateOptions,
  GenerateResult,
  Timings,
  TokenLogprob,
} from './model.js';
export { CxrError } from './errors.js';
export type { CxrErrorCode } from './errors.js';
export { SYSTEM_PROMPT, REPORT_PROMPT, DIFFERENTIAL_PROMPT, chatText } from './prompt.js';
export type { ChatMessage } from './prompt.js';
export { quantize, dequantize, readGgufInfo, simdLevel } from './tensors.js';
export type { GgufInfo } from './tensors.js';
export { GgufWriter, GGML_TYPES, tensorBytes } from './gguf-writer.js';
export type { GgmlTypeName, GgufValueType } from './gguf-writer.js';
export { parseSentencePieceModel } from './sentencepiece.js';
export type { SentencePieceModel } from './sentencepiece.js';
