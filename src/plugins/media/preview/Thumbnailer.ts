/**
 * Making one thumbnail with `sharp` (libvips, prebuilt binaries from npm):
 * the original's bytes in, a WebP no larger than `size` px on its longest
 * side out (EXIF orientation applied, never enlarged, first frame of an
 * animation). The only place sharp is called, and its exceptions become
 * `ThumbnailError` here.
 *
 * Formats are whatever sharp's bundled libvips decodes (`decodable`): with
 * the prebuilt binaries, JPEG, PNG, WebP, GIF, AVIF, TIFF (and SVG); HEIC
 * (HEVC) is not among them, as the bundled libheif carries no HEVC decoder.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import sharp from "sharp"
import { MAX_THUMBNAIL_BYTES } from "./Protocol.js"

// libvips' operation cache keeps recent results in memory: useless for one-off thumbnails
sharp.cache(false)

/** How thumbnails are made; `id` names it in records, so change it whenever the output would. */
export interface Recipe {
  readonly id: string
  /** Longest side in px. */
  readonly size: number
  /** WebP quality, 1 to 100. */
  readonly quality: number
}

/** The default recipe: WebP, longest side 512 px, quality 80. */
export const DEFAULT_RECIPE: Recipe = { id: "webp-512-q80-v1", size: 512, quality: 80 }

/** Largest original decoded, in pixels (a decompression bomb is refused, not decoded). */
export const MAX_INPUT_PIXELS = 100_000_000

/** A thumbnail made. */
export interface Made {
  readonly bytes: Uint8Array
  readonly width: number
  readonly height: number
  readonly mime: "image/webp"
}

/** A thumbnail could not be made: `Undecodable` (sharp refused the bytes) or `TooLarge`. */
export class ThumbnailError extends Data.TaggedError("ThumbnailError")<{
  readonly reason: "Undecodable" | "TooLarge"
  readonly detail: string
}> {}

const sharpInputs: Record<string, string> = {
  "image/jpeg": "jpeg",
  "image/png": "png",
  "image/webp": "webp",
  "image/gif": "gif",
  "image/avif": "heif",
  "image/heic": "heif",
  "image/heif": "heif",
  "image/tiff": "tiff",
  "image/svg+xml": "svg"
}

/**
 * Whether this build of sharp decodes files of `mime` at all. HEIC passes
 * this (libheif is there) but fails to decode for lack of an HEVC codec:
 * such a file gets an `Undecodable` record, once.
 */
export const decodable = (mime: string): boolean => {
  const format = sharpInputs[mime]
  return format !== undefined && (sharp.format as unknown as Record<string, { input: { buffer: boolean } }>)[format]?.input.buffer === true
}

/** The thumbnail of `input` by `recipe`. */
export const make = (input: Uint8Array, recipe: Recipe = DEFAULT_RECIPE): Effect.Effect<Made, ThumbnailError> =>
  Effect.tryPromise({
    try: () =>
      sharp(input, { limitInputPixels: MAX_INPUT_PIXELS, failOn: "error" })
        .rotate()
        .resize(recipe.size, recipe.size, { fit: "inside", withoutEnlargement: true })
        .webp({ quality: recipe.quality })
        .toBuffer({ resolveWithObject: true }),
    catch: (cause) => {
      const detail = cause instanceof Error ? cause.message : String(cause)
      return new ThumbnailError({ reason: /pixel limit/i.test(detail) ? "TooLarge" : "Undecodable", detail: detail.slice(0, 500) })
    }
  }).pipe(Effect.flatMap(({ data, info }) =>
    data.length > MAX_THUMBNAIL_BYTES
      ? Effect.fail(new ThumbnailError({ reason: "TooLarge", detail: `the thumbnail has ${data.length} bytes` }))
      : Effect.succeed<Made>({ bytes: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height, mime: "image/webp" })
  ))
