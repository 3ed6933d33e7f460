/**
 * `EncodedImage`: an image after the vision tower, as a handle on embeddings
 * that stay in the engine (backend memory). Generations read them there; JS
 * sees them only when `.data` is read.
 *
 * Lifetimes, as better-sqlite3 does for statements: the engine memory is freed
 * when the object is garbage-collected, when `dispose()` is called, or when
 * the model that made it is closed, whichever comes first. After that the
 * object says so with a clear error instead of reaching freed memory.
 */
import { CxrError, fromNative } from '../errors.js';
import type { NativeImage, NativeSegment } from './native.js';

/** What an EncodedImage needs to know about the model that made it. */
export interface ImageOwner {
  /** True once the model is closed. */
  readonly closed: boolean;
}

let nextImageId = 1;

/** An image turned into input embeddings by `model.encodeImage()`; pass it as `image` to skip re-encoding. */
export class EncodedImage {
  /** Number of image tokens (1024 for CXR-LLaVA). */
  readonly tokens: number;
  /** Width of each token (the language model's embedding width). */
  readonly dim: number;
  /** Time the vision tower took. */
  readonly encodeMs: number;
  /** Time the native preprocessing took (luma, resize, crop, normalisation), 0 for preprocessed pixels. */
  readonly preprocessMs: number;
  /** Warnings from decoding, e.g. a lateral DICOM view the model was not trained on. */
  readonly warnings: readonly string[];
  /** A DICOM input's SOP Instance UID, to join results back. */
  readonly sopInstanceUid?: string;
  /** @internal identifies the object for the KV cache's bookkeeping in JS */
  readonly id: number;
  #handle: NativeImage;
  #owner: ImageOwner;
  #data: Float32Array | undefined;

  /** @internal made by Model.encodeImage() */
  constructor(
    handle: NativeImage,
    owner: ImageOwner,
    fields: { encodeMs: number; preprocessMs: number; warnings: readonly string[]; sopInstanceUid?: string },
  ) {
    this.#handle = handle;
    this.#owner = owner;
    this.tokens = handle.rows;
    this.dim = handle.dim;
    this.encodeMs = fields.encodeMs;
    this.preprocessMs = fields.preprocessMs;
    this.warnings = Object.freeze([...fields.warnings]);
    if (fields.sopInstanceUid) this.sopInstanceUid = fields.sopInstanceUid;
    this.id = nextImageId++;
  }

  /**
   * The `[tokens × dim]` embeddings in the language model's space. The first read
   * copies them out of the engine (16 MiB at full size) and keeps that copy;
   * an image only ever passed to `generate()` never pays for it.
   * Throws `ERR_MODEL_CLOSED` or `ERR_IMAGE_DISPOSED` when the engine memory is gone and no copy was made.
   */
  get data(): Float32Array {
    if (this.#data) return this.#data;
    this.#usable();
    try {
      this.#data = this.#handle.read();
    } catch (err) {
      throw fromNative(err);
    }
    return this.#data;
  }

  /** True once the engine memory is freed: by `dispose()` or by closing the model. */
  get disposed(): boolean {
    return this.#handle.released || this.#owner.closed;
  }

  /** Frees the engine memory now instead of at garbage collection. A `.data` copy already read stays. */
  dispose(): void {
    this.#handle.release();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #usable(): void {
    if (this.#owner.closed)
      throw new CxrError('ERR_MODEL_CLOSED', 'The model that encoded this image is closed, so its embeddings are gone; encode the image again');
    if (this.#handle.released) throw new CxrError('ERR_IMAGE_DISPOSED', 'This encoded image was disposed; encode the image again');
  }

  /**
   * @internal The prompt segment for a generation on `owner`: a reference to the
   * engine's copy when `owner` made the image, else (another model) its
   * embeddings through JS, as any model with the same width can read them.
   */
  static segment(image: EncodedImage, owner: ImageOwner): NativeSegment {
    if (image.#owner === owner) {
      image.#usable();
      return { image: image.#handle, id: image.id };
    }
    return { embd: image.data, id: image.id };
  }
}
