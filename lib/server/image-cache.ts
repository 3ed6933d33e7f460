/**
 * Images keyed by the SHA-256 of their bytes (and the display window asked
 * for): each is decoded once and run through the vision tower once (the
 * engine keeps the embeddings; the entry holds their `EncodedImage` handle and
 * drops the decoded pixels). The engine recognises a conversation's image
 * positions in the KV cache by a hash of the preprocessed pixels.
 *
 * Least recently used entries are dropped past `capacity`; failures are not
 * kept, so a retry decodes again.
 */
import { createHash } from 'node:crypto';
import type { PreparedImage } from '../cli/batch.js';
import { prepareImage } from '../cli/batch.js';
import type { ImageFlags } from '../cli/options.js';
import type { EncodedImage, Model } from '../runtime/model.js';

export interface CachedImage {
  /** Hex SHA-256 of the image's bytes. */
  readonly hash: string;
  readonly prepared: PreparedImage;
  /** Whether the preprocessing came from the cache. */
  readonly hit: boolean;
  /** The vision tower's output, computed on first use; `encoded.hit` says whether this call reused it. */
  encode(): Promise<{ image: EncodedImage; hit: boolean }>;
}

interface Entry {
  prepared: Promise<PreparedImage>;
  encoded?: Promise<EncodedImage>;
}

/** What an entry keeps of its pixels after encoding: nothing (an encode from it fails as invalid input). */
const NO_PIXELS = Object.freeze({ data: new Uint8Array(0), width: 0, height: 0, channels: 1 as const });

export class ImageCache {
  readonly #entries = new Map<string, Entry>();

  constructor(
    readonly model: Model,
    readonly capacity = 8,
  ) {}

  get size(): number {
    return this.#entries.size;
  }

  static hash(bytes: Uint8Array): string {
    return createHash('sha256').update(bytes).digest('hex');
  }

  /** The image of these bytes, decoded and preprocessed (from the cache when seen before). */
  async get(bytes: Uint8Array, name: string, display: ImageFlags = {}): Promise<CachedImage> {
    const hash = ImageCache.hash(bytes);
    const key = display.window || display.voi !== undefined ? `${hash}/${JSON.stringify(display)}` : hash;
    let entry = this.#entries.get(key);
    const hit = entry !== undefined;
    if (entry) {
      // Most recently used goes last.
      this.#entries.delete(key);
      this.#entries.set(key, entry);
    } else {
      entry = { prepared: prepareImage(this.model, bytes, display, name) };
      this.#entries.set(key, entry);
      while (this.#entries.size > this.capacity) this.#entries.delete(this.#entries.keys().next().value!);
    }
    const e = entry;
    let prepared: PreparedImage;
    try {
      prepared = await e.prepared;
    } catch (err) {
      if (this.#entries.get(key) === e) this.#entries.delete(key);
      throw err;
    }
    return {
      hash,
      prepared,
      hit,
      encode: async () => {
        const encodedHit = e.encoded !== undefined;
        if (!e.encoded) {
          e.encoded = this.model.encodeImage(prepared.pixels, { name: prepared.source });
          // Once encoded, the decoded pixels (width x height x channels bytes,
          // often more than the embeddings' handle) are not needed again.
          void e.encoded.then(
            () => (e.prepared = e.prepared.then((p) => ({ ...p, pixels: NO_PIXELS }))),
            () => undefined,
          );
        }
        try {
          return { image: await e.encoded, hit: encodedHit };
        } catch (err) {
          e.encoded = undefined;
          throw err;
        }
      },
    };
  }
}
