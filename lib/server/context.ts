/**
 * What every route of one server shares: the model, the admission queue, the
 * image cache, the request lifetimes, the metrics and the settings.
 */
import path from 'node:path';
import type { Model } from '../runtime/model.js';
import type { ImageCache } from './image-cache.js';
import type { RemotePolicy } from './image-source.js';
import type { Lifetimes } from './lifetime.js';
import type { ServerMetrics } from './metrics.js';
import type { AdmissionQueue } from './queue.js';

export interface ServeOptions {
  /** Requests the model works on at once (optional, default 1). */
  parallel?: number;
  /** Requests that may wait for a slot; past that, 429 (optional, default 16 × parallel). */
  maxQueue?: number;
  /** Per-request deadline in ms, waiting included (optional, default 600 000). */
  timeoutMs?: number;
  /** Largest request body in bytes (optional, default 64 MiB). */
  bodyLimit?: number;
  /** Required as `Authorization: Bearer <key>` on /v1 and /metrics (optional, default none). */
  apiKey?: string;
  /** An origin allowed to call the API from a browser (optional, default none: CORS off). */
  cors?: string;
  /** Fetch http(s) image URLs (optional, default false). */
  allowRemoteImages?: boolean;
  /** Put prompt text (questions, query strings) in the request log (optional, default false). */
  logPrompts?: boolean;
  /** Request log: false for none, or a stream for pino's JSON lines (optional, default false). */
  log?: false | NodeJS.WritableStream;
  /** Encoded images kept (optional, default 8). */
  imageCacheSize?: number;
  /** The package version, for /health and /v1/info (optional). */
  version?: string;
}

export interface ServerContext {
  model: Model;
  /** The model's name in the API: its file name without `.gguf`. */
  modelId: string;
  queue: AdmissionQueue;
  cache: ImageCache;
  lifetimes: Lifetimes;
  metrics: ServerMetrics;
  remote: RemotePolicy;
  options: Required<Pick<ServeOptions, 'parallel' | 'maxQueue' | 'timeoutMs' | 'bodyLimit' | 'logPrompts'>> & ServeOptions;
  /** Set once shutdown has begun: new model work is refused with 503. */
  closing: boolean;
  startedAt: number;
}

export function modelIdOf(model: Model): string {
  return path.basename(model.info.path).replace(/\.gguf$/i, '');
}
