/**
 * MIME types of common media by file extension: what a player or a web
 * view needs in `Content-Type`. Unknown extensions are
 * `application/octet-stream` (never sniffed: sniffing served bytes is how a
 * file becomes a script).
 *
 * @since 0.1.0
 */
import * as nodePath from "node:path"

const TYPES: Readonly<Record<string, string>> = {
  ".aac": "audio/aac",
  ".avif": "image/avif",
  ".bmp": "image/bmp",
  ".css": "text/css",
  ".csv": "text/csv",
  ".flac": "audio/flac",
  ".gif": "image/gif",
  ".heic": "image/heic",
  ".htm": "text/html",
  ".html": "text/html",
  ".jpeg": "image/jpeg",
  ".jpg": "image/jpeg",
  ".js": "text/javascript",
  ".json": "application/json",
  ".m4a": "audio/mp4",
  ".md": "text/markdown",
  ".mkv": "video/x-matroska",
  ".mov": "video/quicktime",
  ".mp3": "audio/mpeg",
  ".mp4": "video/mp4",
  ".m4v": "video/mp4",
  ".oga": "audio/ogg",
  ".ogg": "audio/ogg",
  ".ogv": "video/ogg",
  ".opus": "audio/opus",
  ".pdf": "application/pdf",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".tif": "image/tiff",
  ".tiff": "image/tiff",
  ".txt": "text/plain",
  ".wav": "audio/wav",
  ".webm": "video/webm",
  ".webp": "image/webp",
  ".zip": "application/zip"
}

/** The fallback type. */
export const OCTET_STREAM = "application/octet-stream"

/** The MIME type of a file by its name. */
export const of = (path: string): string => TYPES[nodePath.extname(path).toLowerCase()] ?? OCTET_STREAM
