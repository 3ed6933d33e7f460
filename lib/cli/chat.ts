/**
 * `cxr-llava chat <image>`: questions about one radiograph, one per line.
 * The image is encoded once; each follow-up extends the same conversation, so
 * the engine only computes the new turn (the KV cache keeps the rest).
 *
 * On a terminal, Ctrl-C stops the answer being written and returns to the
 * prompt; Ctrl-D (end of input) exits. From a pipe, each line is a question and
 * the session ends with the input.
 */
import readline from 'node:readline';
import type { Model } from '../runtime/model.js';
import type { SamplingParams } from './batch.js';
import { prepareImage } from './batch.js';
import type { ImageFlags } from './options.js';
import { ms, perSecond } from './format.js';

export interface ChatOptions {
  model: Model;
  image: string;
  sampling: SamplingParams;
  /** Display window / VOI choice for DICOM and 16-bit inputs. */
  display?: ImageFlags;
  quiet?: boolean;
  verbose?: boolean;
  input?: NodeJS.ReadableStream & { isTTY?: boolean };
  output?: NodeJS.WriteStream;
}

/** Returns the exit status: 0, or 1 when an answer failed (a stopped answer is not a failure). */
export async function runChat(o: ChatOptions): Promise<number> {
  const input = o.input ?? process.stdin;
  const output = o.output ?? process.stdout;
  const interactive = input.isTTY === true && output.isTTY === true;
  const img = await prepareImage(o.model, o.image, o.display);
  for (const w of img.warnings) process.stderr.write(`warning: ${o.image}: ${w}\n`);
  const session = o.model.chat(await o.model.encodeImage(img.pixels, { name: img.source }));

  const rl = readline.createInterface({ input, output, terminal: interactive, prompt: '> ' });
  let current: AbortController | undefined;
  let status = 0;
  rl.on('SIGINT', () => {
    if (current) current.abort(new Error('stopped'));
    else {
      output.write('^C  (Ctrl-D exits)\n');
      rl.prompt();
    }
  });
  if (interactive) {
    if (!o.quiet) output.write(`Ask about ${o.image}. Ctrl-C stops an answer, Ctrl-D exits.\n`);
    rl.prompt();
  }
  for await (const line of rl) {
    const question = line.trim();
    if (question === '') {
      if (interactive) rl.prompt();
      continue;
    }
    current = new AbortController();
    let streamed = '';
    try {
      const r = await session.send(question, {
        temperature: o.sampling.temperature,
        topP: o.sampling.topP,
        maxTokens: o.sampling.maxTokens,
        ...(o.sampling.seed !== undefined ? { seed: o.sampling.seed } : {}),
        signal: current.signal,
        onToken: (t) => {
          if (!interactive) return;
          streamed += t;
          output.write(t);
        },
      });
      if (!interactive) output.write(r.text.trimEnd() + '\n');
      else output.write(streamed.endsWith('\n') ? '' : '\n');
      if (o.verbose) {
        const t = r.timings;
        process.stderr.write(
          `prefill ${t.prefillTokens} tok in ${ms(t.prefillMs)}, decode ${t.decodeTokens} tok in ${ms(t.decodeMs)} (${perSecond(t.decodeTokens, t.decodeMs).toFixed(1)} tok/s)\n`,
        );
      }
    } catch (err) {
      if (current.signal.aborted) output.write(' [stopped]\n');
      else {
        if (streamed && !streamed.endsWith('\n')) output.write('\n');
        process.stderr.write(`error: ${o.verbose && err instanceof Error ? (err.stack ?? err.message) : (err as Error).message}\n`);
        status = 1;
      }
    } finally {
      current = undefined;
    }
    if (interactive) rl.prompt();
  }
  if (interactive) output.write('\n');
  return status;
}
