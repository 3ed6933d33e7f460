// The page's calls to its own server: JSON, images, and server-sent events read
// from fetch() streams (EventSource cannot POST).

let apiKey = sessionStorage.getItem('cxr-llava-key') ?? '';

export function setApiKey(key) {
  apiKey = key;
  sessionStorage.setItem('cxr-llava-key', key);
}

function headers(extra = {}) {
  return apiKey ? { ...extra, authorization: `Bearer ${apiKey}` } : extra;
}

/** An Error carrying the server's status and OpenAI-style error body. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code ?? null;
  }
}

async function check(res) {
  if (res.ok) return res;
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  throw new ApiError(res.status, body);
}

export async function getJson(path) {
  return (await check(await fetch(path, { headers: headers() }))).json();
}

/** The content type a file is sent with; DICOM files often come without one. */
export function mediaType(file, bytes) {
  if (file.type && file.type !== 'application/octet-stream') return file.type;
  const b = new Uint8Array(bytes, 128, Math.min(4, Math.max(0, bytes.byteLength - 128)));
  if (b.length === 4 && String.fromCharCode(...b) === 'DICM') return 'application/dicom';
  if (/\.(dcm|dicom)$/i.test(file.name)) return 'application/dicom';
  return 'application/octet-stream';
}

/** The model's view of the image, as a PNG blob. */
export async function preview(bytes, type, name, signal) {
  const res = await check(await fetch(`/v1/images/preview?name=${encodeURIComponent(name)}`, { method: 'POST', body: bytes, headers: headers({ 'content-type': type }), signal }));
  return res.blob();
}

/** Yields { event, data } for each server-sent event of a response. */
async function* events(res) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let at;
    while ((at = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, at);
      buf = buf.slice(at + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      yield { event, data: data.join('\n') };
    }
  }
}

/** POST /v1/reports?stream=true: calls onText for each piece, resolves with the record. */
export async function streamReport(bytes, type, query, onText, signal) {
  const qs = new URLSearchParams({ ...query, stream: 'true' });
  const res = await check(await fetch(`/v1/reports?${qs}`, { method: 'POST', body: bytes, headers: headers({ 'content-type': type }), signal }));
  for await (const e of events(res)) {
    const data = JSON.parse(e.data);
    if (e.event === 'token') onText(data.text);
    else if (e.event === 'record') return data;
    else if (e.event === 'error') throw new ApiError(500, data);
  }
  throw new Error('The server closed the stream before the report was done');
}

/** POST /v1/chat/completions with stream: true: calls onText per piece, resolves with { text, finishReason, timings }. */
export async function streamChat(body, onText, signal) {
  const res = await check(await fetch('/v1/chat/completions', {
    method: 'POST',
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
    headers: headers({ 'content-type': 'application/json' }),
    signal,
  }));
  let text = '';
  let finishReason = null;
  let timings = null;
  let usage = null;
  for await (const e of events(res)) {
    if (e.data === '[DONE]') break;
    const chunk = JSON.parse(e.data);
    if (chunk.error) throw new ApiError(500, chunk);
    if (chunk.usage) usage = chunk.usage;
    if (chunk.timings) timings = chunk.timings;
    const choice = chunk.choices?.[0];
    if (choice?.delta?.content) {
      text += choice.delta.content;
      onText(choice.delta.content);
    }
    if (choice?.finish_reason) finishReason = choice.finish_reason;
  }
  return { text, finishReason, timings, usage };
}
