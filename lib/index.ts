/**
 * cxr-llava: CXR-LLaVA chest X-ray reports, locally, from Node.js.
 *
 * ```ts
 * import { loadModel } from 'cxr-llava';
 * const model = await loadModel({ model: 'cxr-llava-v2.q8_0.gguf', mmproj: 'mmproj-cxr-llava-v2.q8_0.gguf' });
 * const { text } = await model.report('chest.png');
 * await model.close();
 * ```
 */
export { loadModel, Model, ChatSession } from './runtime/model.js';
export { EncodedImage } from './runtime/encoded-image.js';
export type {
  LoadModelOptions,
  ModelInfo,
  Progress,
  TokenizeOptions,
  GenerateOptions,
  GenerateResult,
  ReportResult,
  Timings,
  TokenLogprob,
} from './runtime/model.js';
export { CxrError } from './errors.js';
export type { CxrErrorCode } from './errors.js';
export { SYSTEM_PROMPT, REPORT_PROMPT, DIFFERENTIAL_PROMPT, IMAGE_PLACEHOLDER, chatText } from './runtime/prompt.js';
export { preprocessImage, loadGray8, IMAGE_SIZE, OFFICIAL_MEAN, OFFICIAL_STD, SUPPORTED_FORMATS } from './inputs/image.js';
export type { ImageInput, RawPixels, PreprocessOptions } from './inputs/image.js';
export { convertCheckpoint, CONVERT_TYPES, VISION_TYPES } from './convert/convert.js';
export type { ConvertOptions, ConvertResult, ConvertProgress, ConvertType, VisionType } from './convert/convert.js';
export { pullModel, resolveDefaultModel, listCachedModels, cacheRoot, DEFAULT_REPO } from './hub/hub.js';
export type { PullOptions, PullProgress, CachedModel } from './hub/hub.js';
export type { ChatMessage } from './runtime/prompt.js';
export { quantize, quantizeAsync, dequantize, readGgufInfo, simdLevel } from './runtime/tensors.js';
export type { GgufInfo } from './runtime/tensors.js';
export { GgufWriter, GGML_TYPES, tensorBytes } from './convert/gguf-writer.js';
export type { GgmlTypeName, GgufValueType } from './convert/gguf-writer.js';
export { parseSentencePieceModel } from './convert/sentencepiece.js';
export type { SentencePieceModel } from './convert/sentencepiece.js';
export { labelReport, explainReport } from './eval/labeler.js';
export type { LabeledMention, LabelExplanation } from './eval/labeler.js';
export { OBSERVATIONS, labelFromChexpertValue } from './eval/observations.js';
export type { Observation, Label, Findings } from './eval/observations.js';
export { confusionCell, metricsFromCounts, scoreStudies, macroAverage, microAverage, CELL } from './eval/metrics.js';
export type { Counts, Metrics, ObservationMetrics, AverageMetrics, StudyLabels, Scores, MetricName } from './eval/metrics.js';
export { bootstrapScores, mulberry32, percentile } from './eval/bootstrap.js';
export type { BootstrapOptions, BootstrapResult, Interval, Intervals } from './eval/bootstrap.js';
export { parseManifest, readManifest, ManifestError } from './eval/manifest.js';
export type { Manifest, ManifestRow, Reference } from './eval/manifest.js';
export { evaluate, PROTOCOL } from './eval/score.js';
export type { EvaluateOptions, EvalResult, Generated, ReportLabeler, StudyResult } from './eval/score.js';
export { PAPER_MIMIC, PAPER_CITATION } from './eval/paper.js';
export type { PublishedFigures } from './eval/paper.js';
export { shardOf, shardKey, parseShard, selectShard } from './cli/shard.js';
export type { Shard } from './cli/shard.js';
