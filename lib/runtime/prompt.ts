/**
 * The LLaMA-2 chat format as CXR-LLaVA's official code feeds it, and the
 * official prompt strings (word for word).
 *
 * The official pipeline (transformers 4.36 slow LlamaTokenizer, default LLaMA
 * chat template) builds the text
 *
 *   <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST]
 *
 * and appends ` {answer} </s><s>[INST] {question} [/INST]` for later turns. The
 * tokenizer adds its own BOS and turns the literal `<s>`/`</s>` into control
 * tokens, so the sequence starts with two BOS tokens. Each text chunk between
 * special tokens gets SentencePiece's dummy prefix.
 */

/** The official system prompt. */
export const SYSTEM_PROMPT =
  'You are a helpful radiologist. Try to interpret chest x ray image and answer to the question that user provides.';

/** The official report prompt. */
export const REPORT_PROMPT =
  'Write a radiologic report on the given chest radiograph, including information about atelectasis, cardiomegaly, consolidation, pulmonary edema, pleural effusion, and pneumothorax.';

/** The official differential-diagnosis prompt. */
export const DIFFERENTIAL_PROMPT = 'What are the possible differential diagnoses for this patient?';

/** Where the image embeddings go in the prompt text. */
export const IMAGE_PLACEHOLDER = '<image>';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/**
 * The chat transcript as one string in the official format. `system` defaults
 * to the official system prompt; a system message in `messages` replaces it.
 * With `image`, `<image>\n` starts the first user turn, as in the official code.
 * The last message must be from the user.
 */
export function chatText(messages: readonly ChatMessage[], system: string = SYSTEM_PROMPT, image = false): string {
  let sys = system;
  const turns = messages.filter((m) => {
    if (m.role === 'system') {
      sys = m.content;
      return false;
    }
    return true;
  });
  if (turns.length === 0 || turns[turns.length - 1]!.role !== 'user') {
    throw new TypeError('messages must end with a user message');
  }
  let text = '';
  for (let i = 0; i < turns.length; i++) {
    const m = turns[i]!;
    const expected = i % 2 === 0 ? 'user' : 'assistant';
    if (m.role !== expected) throw new TypeError(`message ${i} should be from the ${expected}, not the ${m.role}`);
    if (m.role === 'user') {
      const content = i === 0 && image ? `${IMAGE_PLACEHOLDER}\n${m.content.trim()}` : m.content.trim();
      const body = i === 0 ? `<<SYS>>\n${sys}\n<</SYS>>\n\n${content}` : content;
      text += `<s>[INST] ${body} [/INST]`;
    } else {
      text += ` ${m.content.trim()} </s>`;
    }
  }
  return text;
}
