/**
 * OpenAI's chat completions, mapped onto the model: the request body to a
 * conversation, one image and sampling options; the result to a
 * `chat.completion` object or to `chat.completion.chunk` events.
 *
 * CXR-LLaVA reads one radiograph per conversation, and was trained with it at
 * the start of the first user turn, so that is where it goes, whichever user
 * message carried it. A client may resend the same image with every turn (as
 * chat UIs do); a second, different image is an error. A system message
 * replaces the official system prompt; without one the official prompt is
 * used. Fields this server does not know are ignored, as OpenAI's own
 * server ignores unknown fields.
 */
import { randomBytes } from 'node:crypto';
import type { ChatMessage } from '../runtime/prompt.js';
import type { GenerateResult, Model, TokenLogprob } from '../runtime/model.js';
import { badRequest } from './errors.js';

export interface ChatRequest {
  messages: ChatMessage[];
  /** The conversation's image (`data:` or http(s) URL) and where it was found, for error messages. */
  image?: { url: string; param: string };
  maxTokens: number;
  temperature: number;
  topP: number;
  seed?: number;
  stop?: string[];
  /** 0 for none; otherwise how many alternatives per token (the chosen token alone when logprobs is true and top_logprobs 0). */
  logprobs: boolean;
  topLogprobs: number;
  stream: boolean;
  includeUsage: boolean;
  /** Our extension (as llama.cpp's and vLLM's servers have it): keep generating past end-of-text, for load tests. */
  ignoreEos: boolean;
}

/** Defaults: the official sampling settings, and the CLI's token budget. */
export const CHAT_DEFAULTS = { maxTokens: 512, temperature: 0.2, topP: 0.8 } as const;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function num(body: Record<string, unknown>, name: string, min: number, max: number, integer = false): number | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    throw badRequest(`${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, not ${JSON.stringify(v)}`, name);
  }
  return v;
}

/** Reads and checks a chat completions body; every problem is a 400 naming the field. */
export function parseChatRequest(body: unknown): ChatRequest {
  if (!isObject(body)) throw badRequest('The body must be a JSON object with "messages"', null);
  if (!Array.isArray(body.messages) || body.messages.length === 0) throw badRequest('messages must be a non-empty array', 'messages');
  const messages: ChatMessage[] = [];
  let image: ChatRequest['image'];
  body.messages.forEach((raw: unknown, i: number) => {
    const param = `messages[${i}]`;
    if (!isObject(raw)) throw badRequest(`${param} must be an object with role and content`, param);
    const role = raw.role === 'developer' ? 'system' : raw.role;
    if (role !== 'system' && role !== 'user' && role !== 'assistant') {
      throw badRequest(`${param}.role must be system, developer, user or assistant, not ${JSON.stringify(raw.role)}`, `${param}.role`);
    }
    const texts: string[] = [];
    const content = raw.content;
    if (typeof content === 'string') texts.push(content);
    else if (content === null && role === 'assistant') texts.push('');
    else if (Array.isArray(content)) {
      content.forEach((part: unknown, j: number) => {
        const pp = `${param}.content[${j}]`;
        if (!isObject(part)) throw badRequest(`${pp} must be an object with a type`, pp);
        if (part.type === 'text') {
          if (typeof part.text !== 'string') throw badRequest(`${pp}.text must be a string`, `${pp}.text`);
          texts.push(part.text);
        } else if (part.type === 'image_url') {
          if (role !== 'user') throw badRequest(`${pp}: images go in user messages`, pp);
          const iu = part.image_url;
          const url = typeof iu === 'string' ? iu : isObject(iu) ? iu.url : undefined;
          if (typeof url !== 'string' || url === '') throw badRequest(`${pp}.image_url.url must be a non-empty string`, `${pp}.image_url.url`);
          if (image && image.url !== url) throw badRequest(`${pp}: this model reads one radiograph per conversation, and an earlier message has a different one`, pp, 'too_many_images');
          image ??= { url, param: `${pp}.image_url.url` };
        } else {
          throw badRequest(`${pp}.type ${JSON.stringify(part.type)} is not supported (use text or image_url)`, `${pp}.type`);
        }
      });
    } else {
      throw badRequest(`${param}.content must be a string or an array of content parts`, `${param}.content`);
    }
    messages.push({ role, content: texts.join('\n') });
  });

  const n = num(body, 'n', 1, 1, true);
  void n; // only n = 1 is served; num() refuses anything else
  const maxTokens = num(body, 'max_completion_tokens', 1, 1 << 20, true) ?? num(body, 'max_tokens', 1, 1 << 20, true) ?? CHAT_DEFAULTS.maxTokens;
  const temperature = num(body, 'temperature', 0, 2) ?? CHAT_DEFAULTS.temperature;
  const topP = num(body, 'top_p', 0, 1) ?? CHAT_DEFAULTS.topP;
  const seed = num(body, 'seed', 0, Number.MAX_SAFE_INTEGER, true);
  let stop: string[] | undefined;
  if (typeof body.stop === 'string') stop = [body.stop];
  else if (Array.isArray(body.stop)) {
    if (body.stop.length > 4 || !body.stop.every((s) => typeof s === 'string' && s !== '')) throw badRequest('stop must be a string or up to 4 non-empty strings', 'stop');
    stop = body.stop as string[];
  } else if (body.stop !== undefined && body.stop !== null) throw badRequest('stop must be a string or an array of strings', 'stop');
  if (body.logprobs !== undefined && body.logprobs !== null && typeof body.logprobs !== 'boolean') throw badRequest('logprobs must be true or false', 'logprobs');
  const logprobs = body.logprobs === true;
  const topLogprobs = num(body, 'top_logprobs', 0, 20, true) ?? 0;
  if (topLogprobs > 0 && !logprobs) throw badRequest('top_logprobs needs logprobs: true', 'top_logprobs');
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') throw badRequest('stream must be true or false', 'stream');
  const so = body.stream_options;
  const includeUsage = isObject(so) && so.include_usage === true;
  if (body.ignore_eos !== undefined && typeof body.ignore_eos !== 'boolean') throw badRequest('ignore_eos must be true or false', 'ignore_eos');
  return {
    messages,
    ...(image ? { image } : {}),
    maxTokens,
    temperature,
    topP,
    ...(seed !== undefined ? { seed } : {}),
    ...(stop ? { stop } : {}),
    logprobs,
    topLogprobs,
    stream: body.stream === true,
    includeUsage,
    ignoreEos: body.ignore_eos === true,
  };
}

export function completionId(): string {
  return `chatcmpl-${randomBytes(12).toString('hex')}`;
}

/** A token's text as OpenAI shows it: SentencePiece's "▁" as a space, byte tokens as their byte. */
function tokenText(model: Model, id: number): { token: string; bytes: number[] } {
  const piece = model.tokenPiece(id);
  const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
  if (byte) {
    const b = parseInt(byte[1]!, 16);
    return { token: String.fromCharCode(b), bytes: [b] };
  }
  const token = piece.replace(/\u2581/g, ' ');
  return { token, bytes: [...Buffer.from(token, 'utf8')] };
}

export interface OpenAiLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

/** The engine's per-token log-probabilities in OpenAI's `logprobs.content` form. */
export function toOpenAiLogprobs(model: Model, lps: readonly TokenLogprob[], top: number): OpenAiLogprob[] {
  return lps.map((lp) => ({
    ...tokenText(model, lp.token),
    logprob: lp.logprob,
    top_logprobs: lp.top.slice(0, top).map((t) => ({ ...tokenText(model, t.token), logprob: t.logprob })),
  }));
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Prompt positions the KV cache already held (a follow-up's earlier turns and image). */
  prompt_tokens_details: { cached_tokens: number };
}

export function usage(promptTokens: number, r: GenerateResult): Usage {
  const completion = r.tokens.length;
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completion,
    total_tokens: promptTokens + completion,
    prompt_tokens_details: { cached_tokens: Math.max(0, promptTokens - r.timings.prefillTokens) },
  };
}

/** Our timings, added to responses as an extra field (OpenAI's clients keep unknown fields). */
export interface ResponseTimings {
  /** From the request arriving to the first token. */
  ttftMs: number;
  encodeMs: number;
  /** True when the image's encoding came from the cache. */
  imageCached: boolean;
  prefillTokens: number;
  prefillMs: number;
  decodeTokens: number;
  decodeMs: number;
}
