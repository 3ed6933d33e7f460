/**
 * The Prometheus metrics of one server (`GET /metrics`), in a registry of its
 * own so several servers in one process (tests) do not share counters. The
 * process metrics of prom-client (resident memory, event-loop lag, heap) come
 * with them.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AdmissionQueue } from './queue.js';

/** Seconds, from 5 ms to 10 min: covers the tiny test model and a 7B report on two cores. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

export class ServerMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'status'>;
  readonly errors: Counter<'code'>;
  readonly promptTokens: Counter;
  readonly cachedPromptTokens: Counter;
  readonly completionTokens: Counter;
  readonly imageCache: Counter<'result'>;
  readonly decodeRate: Gauge;
  readonly encodeSeconds: Histogram;
  readonly prefillSeconds: Histogram;
  readonly decodeSeconds: Histogram;
  readonly ttftSeconds: Histogram;
  readonly requestSeconds: Histogram<'route'>;

  constructor(queue: AdmissionQueue) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({ name: 'cxr_http_requests_total', help: 'HTTP requests answered, by route and status', labelNames: ['route', 'status'], registers });
    new Gauge({ name: 'cxr_queue_depth', help: 'Requests waiting for the model', registers, collect() { this.set(queue.depth); } });
    new Gauge({ name: 'cxr_requests_running', help: 'Requests the model is working on', registers, collect() { this.set(queue.active); } });
    new Gauge({ name: 'cxr_parallel_slots', help: 'Requests the model may work on at once (--parallel)', registers, collect() { this.set(queue.parallel); } });
    this.errors = new Counter({ name: 'cxr_request_errors_total', help: 'Failed requests by error code (client_closed, deadline_exceeded, queue_full, invalid_image, ...)', labelNames: ['code'], registers });
    this.promptTokens = new Counter({ name: 'cxr_prompt_tokens_total', help: 'Prompt positions of generations (image positions included)', registers });
    this.cachedPromptTokens = new Counter({ name: 'cxr_prompt_tokens_cached_total', help: 'Prompt positions reused from the KV cache instead of computed', registers });
    this.completionTokens = new Counter({ name: 'cxr_completion_tokens_total', help: 'Tokens generated (aborted generations included)', registers });
    this.imageCache = new Counter({ name: 'cxr_image_cache_total', help: 'Encoded-image cache lookups, by result (hit or miss)', labelNames: ['result'], registers });
    this.decodeRate = new Gauge({ name: 'cxr_decode_tokens_per_second', help: 'Decode speed of the last finished generation', registers });
    this.encodeSeconds = new Histogram({ name: 'cxr_encode_seconds', help: 'Vision tower time per encoded image', buckets: LATENCY_BUCKETS, registers });
    this.prefillSeconds = new Histogram({ name: 'cxr_prefill_seconds', help: 'Prompt processing time per generation', buckets: LATENCY_BUCKETS, registers });
    this.decodeSeconds = new Histogram({ name: 'cxr_decode_seconds', help: 'Token generation time per generation', buckets: LATENCY_BUCKETS, registers });
    this.ttftSeconds = new Histogram({ name: 'cxr_time_to_first_token_seconds', help: 'From the request arriving to its first generated token', buckets: LATENCY_BUCKETS, registers });
    this.requestSeconds = new Histogram({ name: 'cxr_request_seconds', help: 'Whole request time, by route', labelNames: ['route'], buckets: LATENCY_BUCKETS, registers });
  }

  /** Records one finished generation's engine timings. */
  generation(t: { prefillTokens: number; prefillMs: number; decodeTokens: number; decodeMs: number }, promptTokens: number): void {
    this.prefillSeconds.observe(t.prefillMs / 1000);
    this.decodeSeconds.observe(t.decodeMs / 1000);
    this.promptTokens.inc(promptTokens);
    this.cachedPromptTokens.inc(Math.max(0, promptTokens - t.prefillTokens));
    this.completionTokens.inc(t.decodeTokens);
    if (t.decodeMs > 0 && t.decodeTokens > 0) this.decodeRate.set((t.decodeTokens * 1000) / t.decodeMs);
  }
}
