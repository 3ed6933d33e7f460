/**
 * `POST /v1/reports`: one radiograph in, the record `cxr-llava report --jsonl`
 * writes out (the CLI's own record builder makes it). `?task=report|ddx|ask`
 * and `&question=` pick the task; `temperature`, `top_p`, `max_tokens` and
 * `seed` default as on the command line; `findings=true` adds the CheXpert
 * labels as `--findings` does. With `?stream=true` the reply is
 * server-sent events: `token` events with the text as it comes, then one
 * `record` event.
 *
 * `POST /v1/images/preview`: the same body, answered with the model's view of
 * it as a PNG: grey, resized and centre-cropped exactly as the vision tower
 * receives it.
 */
import { performance } from 'node:perf_hooks';
import type { FastifyInstance } from 'fastify';
import sharp from 'sharp';
import { recordFor, type RecordRequest } from '../cli/batch.js';
import type { Task } from '../cli/output.js';
import { preprocessImageGray8 } from '../inputs/image.js';
import type { ServerContext } from './context.js';
import { badRequest, errorBody, toHttpError } from './errors.js';
import { ImageCache } from './image-cache.js';
import { EventStream } from './sse.js';
import { readUpload } from './upload.js';

const TASKS: readonly Task[] = ['report', 'ddx', 'ask'];

function queryNumber(q: Record<string, unknown>, name: string, min: number, max: number, fallback: number, integer = false): number {
  const raw = q[name];
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    throw badRequest(`${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, not ${JSON.stringify(raw)}`, name);
  }
  return v;
}

/** The task and sampling of a /v1/reports query, with the CLI's defaults. */
export function parseReportQuery(q: Record<string, unknown>, file: string): RecordRequest {
  const task = (q.task ?? 'report') as Task;
  if (!TASKS.includes(task)) throw badRequest(`task must be report, ddx or ask, not ${JSON.stringify(q.task)}`, 'task');
  const question = typeof q.question === 'string' ? q.question.trim() : '';
  if (task === 'ask' && question === '') throw badRequest('task=ask needs a question: add &question=...', 'question', 'question_required');
  let seed: bigint | undefined;
  if (q.seed !== undefined && q.seed !== '') {
    if (typeof q.seed !== 'string' || !/^\d+$/.test(q.seed) || BigInt(q.seed) >= 1n << 64n) throw badRequest('seed must be an integer from 0 to 18446744073709551615', 'seed');
    seed = BigInt(q.seed);
  }
  return {
    task,
    ...(task === 'ask' ? { question } : {}),
    file,
    ...(q.findings === 'true' || q.findings === '1' ? { findings: true } : {}),
    sampling: {
      temperature: queryNumber(q, 'temperature', 0, 100, 0.2),
      topP: queryNumber(q, 'top_p', 0, 1, 0.8),
      maxTokens: queryNumber(q, 'max_tokens', 1, 1 << 20, 512, true),
      ...(seed !== undefined ? { seed } : {}),
    },
  };
}

export function registerReportRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.post('/v1/reports', async (request, reply) => {
    const t0 = performance.now();
    if (!ctx.model.info.vision) throw badRequest('This server has no vision projector loaded, so it cannot read images', 'image', 'images_unsupported');
    const q = request.query as Record<string, unknown>;
    const upload = await readUpload(request);
    const req = parseReportQuery(q, upload.name);
    if (ctx.options.logPrompts && req.question) request.log.info({ prompt: req.question }, 'prompt');
    const stream = q.stream === 'true' || q.stream === '1';
    const life = ctx.lifetimes.begin(reply);
    const signal = life.signal;
    let events: EventStream | undefined;
    try {
      const img = await ctx.cache.get(upload.bytes, upload.name);
      const ticket = ctx.queue.enter(signal);
      if (stream) events = new EventStream(reply);
      const slot = await ticket;
      let first = true;
      let record;
      try {
        record = await recordFor(ctx.model, req, img.prepared, {
          signal,
          encode: async () => {
            const enc = await img.encode();
            ctx.metrics.imageCache.inc({ result: enc.hit ? 'hit' : 'miss' });
            if (!enc.hit) ctx.metrics.encodeSeconds.observe(enc.image.encodeMs / 1000);
            signal.throwIfAborted();
            return enc;
          },
          onToken: (text) => {
            if (first) {
              first = false;
              ctx.metrics.ttftSeconds.observe((performance.now() - t0) / 1000);
            }
            events?.send({ text }, 'token');
          },
        });
      } finally {
        slot.done();
      }
      const t = record.timings!;
      ctx.metrics.generation(t, t.prefillTokens);
      if (events) {
        events.send(record, 'record');
        events.end();
        return reply;
      }
      return record;
    } catch (err) {
      if (!events) throw err;
      const e = toHttpError(err);
      ctx.metrics.errors.inc({ code: e.code ?? String(e.status) });
      request.log.warn({ status: e.status, code: e.code }, e.message);
      events.send(errorBody(e), 'error');
      events.end();
      return reply;
    } finally {
      life.end();
    }
  });

  app.post('/v1/images/preview', async (request, reply) => {
    const vision = ctx.model.info.vision;
    if (!vision) throw badRequest('This server has no vision projector loaded, so it cannot read images', 'image', 'images_unsupported');
    const upload = await readUpload(request);
    const gray = await preprocessImageGray8(upload.bytes, { name: upload.name, size: vision.imageSize });
    const png = await sharp(Buffer.from(gray.buffer, gray.byteOffset, gray.length), { raw: { width: vision.imageSize, height: vision.imageSize, channels: 1 } })
      .png()
      .toBuffer();
    return reply.type('image/png').header('x-image-sha256', ImageCache.hash(upload.bytes)).header('cache-control', 'no-store').send(png);
  });
}
