/**
 * The HTTP server of `cxr-llava serve`, on fastify: the routes, the body
 * parsers and limits, the API key and CORS, one error shape for every
 * failure, the request log, and the web page. `createServer()` returns the
 * fastify instance unstarted; `listen()` and `close()` are fastify's.
 *
 * Routes:
 *   GET  /                      the web page (web/ in the package)
 *   GET  /health                liveness, queue and model (no key needed)
 *   GET  /metrics               Prometheus text format
 *   GET  /v1/models             OpenAI's model list: the one model served
 *   GET  /v1/info               the model, its prompts and the server's limits (for the page)
 *   POST /v1/chat/completions   OpenAI's chat completions, with image_url parts
 *   POST /v1/reports            one image in, a `report --jsonl` record out
 *   POST /v1/images/preview     the image as the model sees it, as a PNG
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyInstance } from 'fastify';
import cors from '@fastify/cors';
import multipart from '@fastify/multipart';
import fastifyStatic from '@fastify/static';
import type { Model } from '../runtime/model.js';
import { DIFFERENTIAL_PROMPT, REPORT_PROMPT, SYSTEM_PROMPT } from '../runtime/prompt.js';
import { apiKeyChecker } from './auth.js';
import { registerChatRoute } from './chat-route.js';
import { modelIdOf, type ServeOptions, type ServerContext } from './context.js';
import { errorBody, HttpError, toHttpError } from './errors.js';
import { ImageCache } from './image-cache.js';
import { IMAGE_MEDIA_TYPES } from './image-source.js';
import { Lifetimes } from './lifetime.js';
import { ServerMetrics } from './metrics.js';
import { AdmissionQueue } from './queue.js';
import { registerReportRoutes } from './reports-route.js';

/** The page's files: web/ at the package root (dist/lib/server/ is three levels below it). */
export const WEB_ROOT = fileURLToPath(new URL('../../../web/', import.meta.url));

export const NOT_FOR_CLINICAL_USE = 'Research software, not for clinical use: CXR-LLaVA can be wrong in ways that matter.';

export interface CxrServer {
  app: FastifyInstance;
  context: ServerContext;
}

export async function createServer(model: Model, options: ServeOptions = {}): Promise<CxrServer> {
  const parallel = options.parallel ?? 1;
  const opts = {
    ...options,
    parallel,
    maxQueue: options.maxQueue ?? 16 * parallel,
    timeoutMs: options.timeoutMs ?? 600_000,
    bodyLimit: options.bodyLimit ?? 64 * 1024 * 1024,
    logPrompts: options.logPrompts === true,
  };
  const queue = new AdmissionQueue(parallel, opts.maxQueue);
  const ctx: ServerContext = {
    model,
    modelId: modelIdOf(model),
    queue,
    cache: new ImageCache(model, opts.imageCacheSize ?? 8),
    lifetimes: new Lifetimes(opts.timeoutMs),
    metrics: new ServerMetrics(queue),
    remote: { allow: opts.allowRemoteImages === true, maxBytes: opts.bodyLimit, timeoutMs: 30_000 },
    options: opts,
    closing: false,
    startedAt: Date.now(),
  };

  const logPrompts = opts.logPrompts;
  const app = Fastify({
    bodyLimit: opts.bodyLimit,
    // Prompts travel in /v1/reports query strings, so the logged URL is the path alone unless --log-prompts.
    logger: opts.log
      ? {
          level: 'info',
          stream: opts.log,
          serializers: {
            req: (req: { method: string; url: string; ip?: string }) => ({ method: req.method, url: logPrompts ? req.url : req.url.split('?')[0], remoteAddress: req.ip }),
            res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
          },
        }
      : false,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
  });

  // A client that announces a body (Expect: 100-continue, as curl does past 1 MiB) learns at once
  // that it is too large, before sending it; otherwise the server answers and closes mid-upload.
  app.server.on('checkContinue', (req, res) => {
    const length = Number(req.headers['content-length'] ?? NaN);
    if (length > opts.bodyLimit) {
      ctx.metrics.errors.inc({ code: 'body_too_large' });
      ctx.metrics.requests.inc({ route: 'expect-continue', status: '413' });
      const e = toHttpError({ code: 'FST_ERR_CTP_BODY_TOO_LARGE' }, opts.bodyLimit);
      res.writeHead(413, { 'content-type': 'application/json; charset=utf-8', connection: 'close' }).end(JSON.stringify(errorBody(e)));
      return;
    }
    res.writeContinue();
    app.server.emit('request', req, res);
  });

  // Raw image bodies for /v1/reports and the preview; JSON stays fastify's (its errors map to 400).
  app.addContentTypeParser([...IMAGE_MEDIA_TYPES, 'image/x-png', 'application/dicom+octet-stream'], { parseAs: 'buffer', bodyLimit: opts.bodyLimit }, (_req, body, done) => done(null, body));
  await app.register(multipart, { limits: { fileSize: opts.bodyLimit, files: 1, fields: 16, parts: 20 } });
  if (opts.cors) await app.register(cors, { origin: opts.cors, methods: ['GET', 'POST'], allowedHeaders: ['content-type', 'authorization', 'x-api-key'] });

  const check = opts.apiKey ? apiKeyChecker(opts.apiKey) : undefined;
  app.addHook('onRequest', async (request) => {
    const url = request.url;
    const guarded = url.startsWith('/v1/') || url === '/v1' || url.startsWith('/metrics');
    if (check && guarded && request.method !== 'OPTIONS') check(request.headers);
    if (ctx.closing && url.startsWith('/v1/')) throw new HttpError(503, 'The server is shutting down', 'server_error', 'shutting_down');
  });
  app.addHook('onSend', async (_request, reply, payload) => {
    reply.header('x-content-type-options', 'nosniff');
    if (ctx.closing) reply.header('connection', 'close');
    return payload;
  });
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    ctx.metrics.requests.inc({ route, status: String(reply.statusCode) });
    ctx.metrics.requestSeconds.observe({ route }, reply.elapsedTime / 1000);
  });

  app.setErrorHandler((err, request, reply) => {
    const e = toHttpError(err, opts.bodyLimit);
    ctx.metrics.errors.inc({ code: e.code ?? String(e.status) });
    if (e.status >= 500) request.log.error({ status: e.status, code: e.code, err }, e.message);
    else request.log.info({ status: e.status, code: e.code }, e.message);
    if (e.retryAfter !== undefined) void reply.header('retry-after', String(e.retryAfter));
    void reply.status(e.status).type('application/json').send(errorBody(e));
  });
  app.setNotFoundHandler((request, reply) => {
    ctx.metrics.errors.inc({ code: 'not_found' });
    void reply.status(404).send(errorBody(new HttpError(404, `No route ${request.method} ${request.url.split('?')[0]}`, 'not_found_error', 'not_found')));
  });

  app.get('/health', async (_request, reply) => {
    const body = {
      status: ctx.closing ? 'shutting_down' : 'ok',
      model: ctx.modelId,
      running: queue.active,
      waiting: queue.depth,
      uptimeS: Math.round((Date.now() - ctx.startedAt) / 1000),
    };
    return reply.status(ctx.closing ? 503 : 200).send(body);
  });

  app.get('/metrics', async (_request, reply) => {
    return reply.type(ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics());
  });

  app.get('/v1/models', async () => ({
    object: 'list',
    data: [{ id: ctx.modelId, object: 'model', created: Math.floor(ctx.startedAt / 1000), owned_by: 'cxr-llava' }],
  }));

  app.get('/v1/info', async () => {
    const info = model.info;
    return {
      model: ctx.modelId,
      name: info.name ?? null,
      version: opts.version ?? null,
      contextSize: info.runtime.contextSize,
      threads: info.runtime.threads,
      vision: info.vision ? { imageSize: info.vision.imageSize, tokens: info.vision.tokens } : null,
      parallel,
      maxQueue: opts.maxQueue,
      bodyLimit: opts.bodyLimit,
      prompts: { system: SYSTEM_PROMPT, report: REPORT_PROMPT, ddx: DIFFERENTIAL_PROMPT },
      defaults: { temperature: 0.2, topP: 0.8, maxTokens: 512 },
      notice: NOT_FOR_CLINICAL_USE,
    };
  });

  registerChatRoute(app, ctx);
  registerReportRoutes(app, ctx);

  if (existsSync(WEB_ROOT)) {
    await app.register(fastifyStatic, {
      root: WEB_ROOT,
      prefix: '/',
      index: 'index.html',
      // The page loads nothing from elsewhere: no CDN, no inline script.
      setHeaders: (res) => {
        res.header('content-security-policy', "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'");
        res.header('referrer-policy', 'no-referrer');
      },
    });
  }
  return { app, context: ctx };
}

/**
 * Stops a server: new model work is refused (503), waiting requests are
 * refused, running ones get `graceMs` to finish and are then aborted; resolves
 * once every connection is closed.
 */
export async function closeGracefully(server: CxrServer, graceMs: number): Promise<void> {
  const ctx = server.context;
  if (ctx.closing) return;
  ctx.closing = true;
  ctx.queue.drain(new HttpError(503, 'The server is shutting down', 'server_error', 'shutting_down'));
  const force = setTimeout(() => ctx.lifetimes.abortAll(), graceMs);
  // Keep-alive connections that go idle after close() began would otherwise hold it open for their whole timeout.
  const sweep = setInterval(() => server.app.server.closeIdleConnections(), 100);
  try {
    await server.app.close();
  } finally {
    clearTimeout(force);
    clearInterval(sweep);
  }
}
