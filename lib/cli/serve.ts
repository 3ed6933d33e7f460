/**
 * `cxr-llava serve`: the model behind an OpenAI-compatible HTTP API, with a
 * web page at `/` (lib/server/). Loopback only unless an API key is set;
 * SIGTERM or SIGINT stop it gracefully: no new requests, in-flight ones get
 * `--shutdown-timeout` seconds to finish and are then aborted, exit 0.
 */
import { Command } from 'commander';
import { DEFAULT_PARALLEL, type Model } from '../runtime/model.js';
import { closeGracefully, createServer } from '../server/app.js';
import { addChatterOptions, addModelOptions, intArg, numberArg, type ChatterFlags, type ModelFlags } from './options.js';

export interface ServeFlags extends ModelFlags, ChatterFlags {
  host: string;
  port: number;
  /** Default: the model's `parallel` (loadModel's default, DEFAULT_PARALLEL). */
  parallel?: number;
  maxQueue?: number;
  timeout: number;
  bodyLimit: number;
  apiKey?: string;
  cors?: string;
  allowRemoteImages?: boolean;
  logPrompts?: boolean;
  shutdownTimeout: number;
}

/** What the command needs from bin/cxr-llava.ts. */
export interface ServeDeps {
  /** Loads the model the flags choose (pulling the default one if needed). */
  openModel: (flags: ServeFlags) => Promise<Model>;
  version: string;
}

/** 127.0.0.0/8, ::1 and localhost: the addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h) || h === '::ffff:127.0.0.1';
}

function examples(...lines: string[]): string {
  return '\nExamples:\n' + lines.map((l) => (l.startsWith('#') ? `  ${l}` : `  $ ${l}`)).join('\n');
}

export function registerServe(program: Command, deps: ServeDeps): Command {
  const cmd = program
    .command('serve')
    .description('Serve the model over HTTP: an OpenAI-compatible API with images, and a web page for reading radiographs.')
    .option('--host <address>', 'address to listen on; anything but loopback needs --api-key', '127.0.0.1')
    .option('--port <n>', 'port to listen on (0: any free port)', intArg(0, 65535), 8080)
    .option('--parallel <n>', `requests the model works on at once, sharing each forward pass (default: the model's, ${DEFAULT_PARALLEL})`, intArg(1, 64))
    .option('--max-queue <n>', 'requests that may wait; past that the answer is 429 with Retry-After (default: 16 x --parallel)', intArg(0, 100000))
    .option('--timeout <s>', 'per-request deadline in seconds, waiting included', numberArg(0.05, 86400), 600)
    .option('--body-limit <MiB>', 'largest request body', intArg(1, 4096), 64)
    .option('--api-key <key>', 'require "Authorization: Bearer <key>" on /v1 and /metrics (default: $CXR_LLAVA_API_KEY)')
    .option('--cors <origin>', 'let web pages from this origin call the API (default: CORS off)')
    .option('--allow-remote-images', 'fetch http(s) image URLs in requests (default: data: URLs only)')
    .option('--log-prompts', 'put prompt text in the request log (default: never logged)')
    .option('--shutdown-timeout <s>', 'on SIGTERM, how long in-flight requests may take before they are aborted', intArg(0, 3600), 10);
  addModelOptions(cmd);
  addChatterOptions(cmd);
  cmd.addHelpText(
    'after',
    '\nOpen http://127.0.0.1:8080/ for the page: drop a radiograph, read the report as it is\n' +
      'written, ask follow-up questions. The API is OpenAI\'s chat completions with image_url\n' +
      'parts (data: URLs), plus POST /v1/reports for a `report --jsonl` record per image.\n' +
      'Request logs (JSON lines on stderr; -q for none) carry no image bytes and no prompt text.\n' +
      examples(
        'cxr-llava serve',
        'cxr-llava serve --model ./gguf --port 9000 --parallel 4',
        'cxr-llava serve --host 0.0.0.0 --api-key "$(openssl rand -hex 24)"',
        'curl -s --data-binary @chest.png -H "content-type: image/png" "http://127.0.0.1:8080/v1/reports?temperature=0"',
      ),
  );
  cmd.action(async (flags: ServeFlags) => {
    const apiKey = flags.apiKey ?? (process.env.CXR_LLAVA_API_KEY || undefined);
    if (!isLoopback(flags.host) && !apiKey) {
      cmd.error(`error: --host ${flags.host} reaches beyond this machine: set --api-key <key> (or $CXR_LLAVA_API_KEY) so only your clients can use it`, { exitCode: 2, code: 'cxr.usage' });
    }
    if (apiKey !== undefined && apiKey.length < 8) cmd.error('error: --api-key must be at least 8 characters', { exitCode: 2, code: 'cxr.usage' });
    const model = await deps.openModel(flags);
    // As many requests at once as the engine runs sequences together: more would
    // only wait inside the engine, fewer would leave sequences idle.
    const parallel = flags.parallel ?? model.info.runtime.parallel;
    const { app, context } = await createServer(model, {
      parallel,
      ...(flags.maxQueue !== undefined ? { maxQueue: flags.maxQueue } : {}),
      timeoutMs: flags.timeout * 1000,
      bodyLimit: flags.bodyLimit * 1024 * 1024,
      ...(apiKey ? { apiKey } : {}),
      ...(flags.cors ? { cors: flags.cors } : {}),
      allowRemoteImages: flags.allowRemoteImages === true,
      logPrompts: flags.logPrompts === true,
      log: flags.quiet ? false : process.stderr,
      version: deps.version,
    });
    const address = await app.listen({ host: flags.host, port: flags.port });
    process.stderr.write(`cxr-llava serve: ${context.modelId} on ${address}/ (${parallel} at once, up to ${context.options.maxQueue} waiting)\n`);

    await new Promise<void>((resolve) => {
      const stop = (signal: string): void => {
        process.stderr.write(`cxr-llava serve: ${signal}: finishing ${context.lifetimes.size} request(s), at most ${flags.shutdownTimeout} s\n`);
        void closeGracefully({ app, context }, flags.shutdownTimeout * 1000).finally(resolve);
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
    process.stderr.write('cxr-llava serve: stopped\n');
  });
  return cmd;
}
