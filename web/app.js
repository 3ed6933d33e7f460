// The reader page: pick or drop a radiograph, see the model's input, read the
// report as it streams, ask follow-ups (each reuses the encoded image and the
// conversation's KV cache on the server), copy or download the record.
import { ApiError, getJson, mediaType, preview, setApiKey, streamChat, streamReport } from './api.js';

const $ = (id) => document.getElementById(id);
const el = {
  status: $('status'), modelId: $('model-id'), modelCtx: $('model-ctx'), keyForm: $('key-form'), apiKey: $('api-key'),
  notice: $('notice'), version: $('version'),
  drop: $('drop'), file: $('file'), fileName: $('file-name'), change: $('change'),
  tabOriginal: $('tab-original'), tabModel: $('tab-model'), viewOriginal: $('view-original'), viewModel: $('view-model'),
  imgOriginal: $('img-original'), imgModel: $('img-model'), modelCaption: $('model-caption'),
  task: $('task'), copy: $('copy'), download: $('download'), report: $('report'), timings: $('timings'),
  chat: $('chat'), ask: $('ask'), question: $('question'), askButton: $('ask-button'), stop: $('stop'),
  temperature: $('temperature'), topP: $('top-p'), seed: $('seed'), maxTokens: $('max-tokens'),
};

const state = {
  info: null,
  image: null, // { name, bytes, type, dataUrl }
  record: null,
  turns: [], // { question, answer }
  busy: null, // AbortController of the running request
  urls: [],
};

function setStatus(text, kind) {
  el.status.textContent = text;
  el.status.className = `status ${kind}`;
}

function describe(err) {
  if (err?.name === 'AbortError') return 'Stopped.';
  return err instanceof ApiError ? `${err.message} (HTTP ${err.status})` : String(err?.message ?? err);
}

const fmtMs = (v) => (v == null ? '–' : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(v < 10 ? 1 : 0)} ms`);

function showTimings(rows) {
  el.timings.replaceChildren(...rows.map(([k, v]) => {
    const d = document.createElement('div');
    const dt = document.createElement('dt');
    const dd = document.createElement('dd');
    dt.textContent = k;
    dd.textContent = v;
    d.append(dt, dd);
    return d;
  }));
}

async function connect() {
  try {
    state.info = await getJson('/v1/info');
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      el.keyForm.hidden = false;
      setStatus('needs an API key', 'down');
      el.apiKey.focus();
      return;
    }
    setStatus('unreachable', 'down');
    return;
  }
  const i = state.info;
  el.keyForm.hidden = true;
  el.modelId.textContent = i.model;
  el.modelCtx.textContent = `${i.contextSize} tokens`;
  el.notice.textContent = i.notice;
  el.version.textContent = i.version ? `cxr-llava ${i.version}` : '';
  el.temperature.value = String(i.defaults.temperature);
  el.topP.value = String(i.defaults.topP);
  el.maxTokens.value = String(i.defaults.maxTokens);
  setStatus('ready', 'ok');
}

function sampling() {
  const s = { temperature: Number(el.temperature.value), top_p: Number(el.topP.value), max_tokens: Number(el.maxTokens.value) };
  if (el.seed.value !== '') s.seed = Number(el.seed.value);
  return s;
}

function selectTab(which) {
  const original = which === 'original';
  el.tabOriginal.setAttribute('aria-selected', String(original));
  el.tabModel.setAttribute('aria-selected', String(!original));
  el.tabOriginal.tabIndex = original ? 0 : -1;
  el.tabModel.tabIndex = original ? -1 : 0;
  el.viewOriginal.hidden = !original;
  el.viewModel.hidden = original;
}

function setBusy(ac) {
  state.busy = ac;
  const idle = ac === null;
  el.stop.hidden = idle;
  el.askButton.disabled = !idle || !state.record;
  el.question.disabled = !state.record;
  el.task.disabled = !idle;
  el.copy.disabled = !state.record;
  el.download.disabled = !state.record;
  el.report.setAttribute('aria-busy', String(!idle));
  if (state.info) setStatus(idle ? 'ready' : 'writing', idle ? 'ok' : 'busy');
}

function readAsDataUrl(blob) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(blob);
  });
}

async function openFile(file) {
  if (!file) return;
  state.busy?.abort();
  for (const u of state.urls.splice(0)) URL.revokeObjectURL(u);
  const bytes = await file.arrayBuffer();
  const type = mediaType(file, bytes);
  // The data: URL carries the image in follow-up questions; the server recognises it by its hash.
  const dataUrl = await readAsDataUrl(new Blob([bytes], { type }));
  state.image = { name: file.name, bytes, type, dataUrl };
  state.record = null;
  state.turns = [];
  el.chat.replaceChildren();
  el.fileName.textContent = `${file.name} · ${(file.size / 1024).toFixed(0)} KiB · ${type}`;
  el.change.hidden = false;
  el.drop.classList.add('loaded');
  const browserCanShow = type !== 'application/dicom' && type !== 'image/tiff';
  el.tabOriginal.disabled = !browserCanShow;
  el.tabModel.disabled = false;
  if (browserCanShow) {
    const u = URL.createObjectURL(new Blob([bytes], { type }));
    state.urls.push(u);
    el.imgOriginal.src = u;
  }
  selectTab('model');
  try {
    const png = await preview(bytes, type, file.name);
    const u = URL.createObjectURL(png);
    state.urls.push(u);
    el.imgModel.src = u;
    const side = state.info?.vision?.imageSize ?? '';
    el.modelCaption.textContent = `${side}×${side} grey, Lanczos resize of the short side, centre crop — the vision tower's input`;
  } catch (err) {
    writeReportError(describe(err));
    return;
  }
  await runReport();
}

function writeReportError(message) {
  el.report.classList.remove('empty', 'writing');
  const p = document.createElement('p');
  p.className = 'error';
  p.textContent = message;
  el.report.replaceChildren(p);
}

async function runReport() {
  if (!state.image) return;
  const ac = new AbortController();
  state.record = null;
  setBusy(ac);
  el.report.classList.remove('empty');
  el.report.classList.add('writing');
  el.report.textContent = '';
  showTimings([]);
  const t0 = performance.now();
  let ttft = null;
  try {
    const { bytes, type, name } = state.image;
    const record = await streamReport(bytes, type, { task: el.task.value, name, ...sampling() }, (text) => {
      ttft ??= performance.now() - t0;
      el.report.textContent += text;
    }, ac.signal);
    el.report.textContent = record.text;
    state.record = record;
    const t = record.timings;
    showTimings([
      ['first token', fmtMs(ttft)],
      ['preprocess', fmtMs(t.preprocessMs)],
      ['encode', t.encodeMs ? fmtMs(t.encodeMs) : 'cached'],
      ['prefill', `${t.prefillTokens} tok · ${fmtMs(t.prefillMs)}`],
      ['decode', `${t.decodeTokens} tok · ${fmtMs(t.decodeMs)}`],
      ['speed', t.decodeMs > 0 ? `${((t.decodeTokens * 1000) / t.decodeMs).toFixed(1)} tok/s` : '–'],
      ['finish', record.finishReason],
      ['seed', record.params.seed],
    ]);
  } catch (err) {
    writeReportError(describe(err));
  } finally {
    el.report.classList.remove('writing');
    setBusy(null);
  }
}

function chatMessages(question) {
  const first = state.record.task === 'ddx' ? state.info.prompts.ddx : state.info.prompts.report;
  const messages = [
    { role: 'user', content: [{ type: 'image_url', image_url: { url: state.image.dataUrl } }, { type: 'text', text: first }] },
    { role: 'assistant', content: state.record.text },
  ];
  for (const t of state.turns) messages.push({ role: 'user', content: t.question }, { role: 'assistant', content: t.answer });
  messages.push({ role: 'user', content: question });
  return messages;
}

async function ask(question) {
  if (!state.record || state.busy || question.trim() === '') return;
  const li = document.createElement('li');
  const q = document.createElement('div');
  q.className = 'q';
  q.textContent = question;
  const a = document.createElement('div');
  a.className = 'answer writing';
  const meta = document.createElement('div');
  meta.className = 'meta';
  li.append(q, a, meta);
  el.chat.append(li);
  li.scrollIntoView({ block: 'end' });
  el.question.value = '';
  const ac = new AbortController();
  setBusy(ac);
  try {
    const r = await streamChat({ model: state.info.model, messages: chatMessages(question), ...sampling() }, (text) => {
      a.textContent += text;
    }, ac.signal);
    a.textContent = r.text;
    state.turns.push({ question, answer: r.text });
    const t = r.timings;
    if (t) {
      const cached = r.usage?.prompt_tokens_details?.cached_tokens;
      meta.textContent = `first token ${fmtMs(t.ttftMs)} · ${t.prefillTokens} new prompt tokens${cached != null ? `, ${cached} reused` : ''} · ${t.decodeTokens} tok in ${fmtMs(t.decodeMs)}`;
    }
  } catch (err) {
    a.classList.add('error');
    a.textContent = describe(err);
  } finally {
    a.classList.remove('writing');
    setBusy(null);
    el.question.focus();
  }
}

function download() {
  if (!state.record) return;
  const blob = new Blob([JSON.stringify(state.record, null, 2) + '\n'], { type: 'application/json' });
  const u = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = u;
  link.download = `${state.image.name.replace(/\.[^.]+$/, '')}.cxr-llava.json`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(u), 1000);
}

async function copy() {
  if (!state.record) return;
  const text = [state.record.text, ...state.turns.map((t) => `\nQ: ${t.question}\nA: ${t.answer}`)].join('\n');
  try {
    await navigator.clipboard.writeText(text);
    el.copy.textContent = 'Copied';
  } catch {
    el.copy.textContent = 'Copy failed';
  }
  setTimeout(() => (el.copy.textContent = 'Copy'), 1500);
}

// Wiring.
el.file.addEventListener('change', () => openFile(el.file.files[0]));
el.change.addEventListener('click', () => el.file.click());
for (const ev of ['dragenter', 'dragover']) el.drop.addEventListener(ev, (e) => { e.preventDefault(); el.drop.classList.add('over'); });
for (const ev of ['dragleave', 'drop']) el.drop.addEventListener(ev, (e) => { e.preventDefault(); el.drop.classList.remove('over'); });
el.drop.addEventListener('drop', (e) => openFile(e.dataTransfer.files[0]));
el.tabOriginal.addEventListener('click', () => selectTab('original'));
el.tabModel.addEventListener('click', () => selectTab('model'));
for (const tab of [el.tabOriginal, el.tabModel]) {
  tab.addEventListener('keydown', (e) => {
    if (e.key !== 'ArrowLeft' && e.key !== 'ArrowRight') return;
    const other = tab === el.tabOriginal ? el.tabModel : el.tabOriginal;
    if (other.disabled) return;
    other.click();
    other.focus();
  });
}
el.task.addEventListener('change', () => { state.turns = []; el.chat.replaceChildren(); runReport(); });
el.ask.addEventListener('submit', (e) => { e.preventDefault(); ask(el.question.value); });
el.stop.addEventListener('click', () => state.busy?.abort());
el.copy.addEventListener('click', copy);
el.download.addEventListener('click', download);
el.keyForm.addEventListener('submit', (e) => { e.preventDefault(); setApiKey(el.apiKey.value); connect(); });
document.addEventListener('keydown', (e) => {
  const typing = e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement || e.target instanceof HTMLTextAreaElement;
  if (e.key === 'Escape') state.busy?.abort();
  else if (!typing && e.key === 'o') { e.preventDefault(); el.file.click(); }
  else if (!typing && e.key === '/' && !el.question.disabled) { e.preventDefault(); el.question.focus(); }
});
setInterval(async () => {
  if (state.busy || !state.info) return;
  try { await getJson('/health'); setStatus('ready', 'ok'); } catch { setStatus('unreachable', 'down'); }
}, 15000);

setBusy(null);
connect();
