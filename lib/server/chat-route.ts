/**
 * `POST /v1/chat/completions`: OpenAI's chat completions over the model, plain
 * or streamed as server-sent events ending in `data: [DONE]`.
 */
import { performance } from 'node:perf_hooks';
import type { FastifyInstance } from 'fastify';
import type { GenerateResult } from '../runtime/model.js';
import type { ServerContext } from './context.js';
import { badRequest, errorBody, HttpError, toHttpError } from './errors.js';
import { fetchImageUrl } from './image-source.js';
import { completionId, parseChatRequest, toOpenAiLogprobs, usage, type ResponseTimings } from './openai-chat.js';
import { EventStream } from './sse.js';

export function registerChatRoute(app: FastifyInstance, ctx: ServerContext): void {
  app.post('/v1/chat/completions', async (request, reply) => {
    const t0 = performance.now();
    const req = parseChatRequest(request.body);
    const model = ctx.model;
    const vision = model.info.vision;
    if (!req.image && vision) {
      throw badRequest('This model reads a chest radiograph: add an image_url content part (a data: URL) to the first user message', 'messages', 'image_required');
    }
    if (req.image && !vision) throw badRequest('This server has no vision projector loaded, so it cannot read images', req.image.param, 'images_unsupported');
    const last = req.messages[req.messages.length - 1];
    if (ctx.options.logPrompts && last) request.log.info({ prompt: last.content }, 'prompt');

    const life = ctx.lifetimes.begin(reply);
    const signal = life.signal;
    let events: EventStream | undefined;
    try {
      const bytes = req.image ? await fetchImageUrl(req.image.url, req.image.param, ctx.remote, signal) : undefined;
      const img = bytes ? await ctx.cache.get(bytes, req.image!.param) : undefined;
      const promptTokens = model.promptTokens({ messages: req.messages, image: img !== undefined }).length;
      const context = model.info.runtime.contextSize;
      if (promptTokens >= context) {
        throw new HttpError(400, `The conversation is ${promptTokens} tokens, which leaves no room in the model's context of ${context}`, 'invalid_request_error', 'context_length_exceeded', 'messages');
      }
      const ticket = ctx.queue.enter(signal); // throws 429 now when the queue is full

      const id = completionId();
      const created = Math.floor(Date.now() / 1000);
      const head = { id, created, model: ctx.modelId, system_fingerprint: null };
      let ttftMs = 0;
      let sent = 0;
      if (req.stream) {
        events = new EventStream(reply);
        events.send({ ...head, object: 'chat.completion.chunk', choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] });
      }
      const slot = await ticket;
      let result: GenerateResult;
      let encodeMs = 0;
      let imageCached = false;
      try {
        const enc = img ? await img.encode() : undefined;
        if (enc) {
          ctx.metrics.imageCache.inc({ result: enc.hit ? 'hit' : 'miss' });
          imageCached = enc.hit;
          if (!enc.hit) {
            encodeMs = enc.image.encodeMs;
            ctx.metrics.encodeSeconds.observe(encodeMs / 1000);
          }
        }
        signal.throwIfAborted();
        try {
          result = await model.generate({
            ...(enc ? { image: enc.image } : {}),
            messages: req.messages,
            maxTokens: req.maxTokens,
            temperature: req.temperature,
            topP: req.topP,
            ...(req.seed !== undefined ? { seed: req.seed } : {}),
            ...(req.stop ? { stop: req.stop } : {}),
            logprobs: req.logprobs ? Math.max(1, req.topLogprobs) : 0,
            ignoreEos: req.ignoreEos,
            signal,
            onToken: (text) => {
              if (sent++ === 0) {
                ttftMs = performance.now() - t0;
                ctx.metrics.ttftSeconds.observe(ttftMs / 1000);
              }
              events?.send({ ...head, object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: text }, logprobs: null, finish_reason: null }] });
            },
          });
        } catch (err) {
          ctx.metrics.completionTokens.inc(sent); // what an aborted generation did produce
          throw err;
        }
      } finally {
        slot.done();
      }
      ctx.metrics.generation(result.timings, promptTokens);
      const timings: ResponseTimings = { ttftMs: round(ttftMs), encodeMs: round(encodeMs), imageCached, ...result.timings };
      const logprobs = req.logprobs && result.logprobs ? { content: toOpenAiLogprobs(model, result.logprobs, req.topLogprobs), refusal: null } : null;
      const u = usage(promptTokens, result);
      if (events) {
        // Per-token log-probabilities are known when generation ends, so they come with the final chunk.
        events.send({ ...head, object: 'chat.completion.chunk', choices: [{ index: 0, delta: {}, logprobs, finish_reason: result.finishReason }], timings });
        if (req.includeUsage) events.send({ ...head, object: 'chat.completion.chunk', choices: [], usage: u });
        events.send('[DONE]');
        events.end();
        return reply;
      }
      return {
        ...head,
        object: 'chat.completion',
        choices: [{ index: 0, message: { role: 'assistant', content: result.text, refusal: null }, logprobs, finish_reason: result.finishReason }],
        usage: u,
        timings,
      };
    } catch (err) {
      if (!events) throw err;
      // The status line is gone: the error travels as an event, as OpenAI's streams carry them.
      const e = toHttpError(err);
      ctx.metrics.errors.inc({ code: e.code ?? String(e.status) });
      request.log.warn({ status: e.status, code: e.code }, e.message);
      events.send(errorBody(e));
      events.send('[DONE]');
      events.end();
      return reply;
    } finally {
      life.end();
    }
  });
}

function round(v: number): number {
  return Math.round(v * 10) / 10;
}
