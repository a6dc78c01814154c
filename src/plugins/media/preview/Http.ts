/**
 * Thumbnails over HTTP: routes that the media plugin's server (`Http.ts`)
 * mounts behind its own checks (Host, Origin, method, token), so an app or
 * a web view shows a library's pictures whether this node made their
 * thumbnails, holds them in its cache, or fetches them from another member
 * as they are asked for (`Preview.thumbnail`).
 *
 * Routes (`GET`, and `HEAD` for the same headers without the body, answered
 * from the record alone):
 *
 *   /thumbnail/<library>/<file id>            the thumbnail of a file, by its record id
 *   /thumbnail/<library>/hash/<sha256 hex>    the thumbnail of an original, by its content hash
 *   /gallery/<library>[?limit=N]              a page of the library's thumbnails (first N files by path, default 200, at most 1000)
 *
 * A thumbnail's answer: `200` with its bytes, `Content-Type` from its
 * record (`image/webp`), a strong `ETag` (the thumbnail's own hash: its
 * bytes are content-addressed), `If-None-Match` naming it `304` (from the
 * record: nothing is fetched). Caching: by content hash the URL names
 * one picture for ever, so `private, max-age=31536000, immutable`
 * (`private`: it is the user's data, behind a token, never for a shared
 * cache); by file id the file may change, so `private, no-cache` (the
 * browser revalidates, and the ETag makes that a `304`). Responses carry
 * `X-Content-Type-Options: nosniff` and `Content-Security-Policy: sandbox`.
 *
 * Errors (`PreviewError`'s reasons): `NotFound` 404 (no such file, or no
 * thumbnail recorded for it yet), `Failed` 422 (the original could not be
 * made into one; the record says why), `Unavailable` 503 (no member
 * reachable now holds its bytes), `Storage` 500; a malformed library, id,
 * hash or limit in the URL is 400.
 *
 * ```ts
 * const http = yield* Http.make({ token, routes: PreviewHttp.routes(preview) }) // needs Media.Media and a Scope
 * console.log(http.url(`/gallery/${library}`))
 * ```
 *
 * @since 0.1.0
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Headers from "../http/headers.js"
import { Hash } from "../Models.js"
import type * as Models from "./Models.js"
import * as Preview from "./Preview.js"
import type * as Protocol from "./Protocol.js"

/** The HTTP status of each reason a thumbnail cannot be shown. */
export const STATUS: Readonly<Record<Protocol.Reason, number>> = {
  NotFound: 404,
  Failed: 422,
  Unavailable: 503,
  Storage: 500
}

/** Caching of a thumbnail named by its original's content: the same bytes for ever. */
export const IMMUTABLE = "private, max-age=31536000, immutable"
/** Caching of a thumbnail named by a file, which may change: revalidated each time (a `304` by ETag). */
export const REVALIDATE = "private, no-cache"

const UrlLibrary = Schema.String.pipe(Schema.pattern(/^(?!\.{1,2}$)[A-Za-z0-9._~-]{1,128}$/))
const UrlRecordId = Schema.String.pipe(Schema.pattern(/^(?!\.{1,2}$)[A-Za-z0-9._~-]{1,256}$/))
const ById = Schema.Struct({ library: UrlLibrary, id: UrlRecordId })
const ByHash = Schema.Struct({ library: UrlLibrary, hash: Hash })
const OfLibrary = Schema.Struct({ library: UrlLibrary })
const GalleryQuery = Schema.Struct({
  limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, Preview.MAX_LIST)))
})

const text = (status: number, body: string) => HttpServerResponse.text(`${body}\n`, { status, headers: { "cache-control": "no-store" } })

const failure = (error: Preview.PreviewError) => text(STATUS[error.reason], `${error.reason}: ${error.detail}`)

const badUrl = () => Effect.succeed(text(400, "the URL names no valid library, file id, hash or limit"))

/** Answers a request for the thumbnail of `file` (a record id, or an original's hash). */
const thumbnail = (preview: Preview.Service, library: string, file: string | { readonly hash: string }) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const subject = typeof file === "string" ? file : file.hash
    const found = yield* preview.record(library, file)
    if (Option.isNone(found)) return failure(new Preview.PreviewError({ reason: "NotFound", library, subject, detail: "no thumbnail recorded for it (yet)" }))
    const record: Models.Thumbnail = found.value
    if (record.state === "failed" || record.hash === undefined) {
      return failure(new Preview.PreviewError({ reason: "Failed", library, subject, detail: `${record.reason ?? "Undecodable"}: ${record.detail ?? ""}` }))
    }
    const tag = Headers.etag(record.hash)
    const common = {
      "etag": tag,
      "cache-control": typeof file === "string" ? REVALIDATE : IMMUTABLE,
      "content-security-policy": "sandbox",
      "x-content-type-options": "nosniff"
    }
    if (Headers.noneMatch(request.headers["if-none-match"], tag)) return HttpServerResponse.empty({ status: 304, headers: common })
    const contentType = record.mime ?? "application/octet-stream"
    if (request.method !== "GET") {
      return HttpServerResponse.empty({ status: 200, headers: { ...common, "content-type": contentType, "content-length": String(record.bytes ?? 0) } })
    }
    const shown = yield* preview.thumbnail(library, file)
    return HttpServerResponse.uint8Array(shown.bytes, { status: 200, headers: common, contentType })
  }).pipe(Effect.catchTag("PreviewError", (e) => Effect.succeed(failure(e))))

const escape = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" })[c]!)

/** A page of the library's thumbnails, each an `<img>` of its original's content hash. */
const gallery = (preview: Preview.Service, library: string, limit: number | undefined) =>
  Effect.gen(function*() {
    const listed = yield* preview.list(library, limit === undefined ? {} : { limit })
    const figures = listed.map(({ file, thumbnail: t }) => {
      const src = `/thumbnail/${encodeURIComponent(library)}/hash/${file.hash}`
      const name = escape(file.path)
      return `<figure><img src="${src}" width="${t.width ?? ""}" height="${t.height ?? ""}" alt="${name}" data-file="${escape(file.id)}" decoding="async"><figcaption>${name}</figcaption></figure>`
    })
    return HttpServerResponse.html(
      `<!doctype html>\n<html><head><meta charset="utf-8"><title>${escape(library)}</title>` +
        `<style>body{margin:0;font:12px sans-serif;display:flex;flex-wrap:wrap;gap:8px;padding:8px}` +
        `figure{margin:0;width:160px}img{max-width:160px;max-height:160px;width:auto;height:auto;display:block}` +
        `figcaption{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}</style></head>` +
        `<body id="gallery" data-count="${listed.length}">${figures.join("")}</body></html>\n`
    ).pipe(HttpServerResponse.setHeaders({
      "cache-control": "no-store",
      "content-security-policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'",
      "x-content-type-options": "nosniff"
    }))
  }).pipe(Effect.catchTag("PreviewError", (e) => Effect.succeed(failure(e))))

/** The thumbnail and gallery routes of `preview`, for `Http.make`'s `routes` (which puts its checks in front). */
export const routes = (preview: Preview.Service): HttpRouter.HttpRouter =>
  HttpRouter.empty.pipe(
    HttpRouter.get(
      "/thumbnail/:library/hash/:hash",
      Effect.flatMap(HttpRouter.schemaPathParams(ByHash), ({ hash, library }) => thumbnail(preview, library, { hash })).pipe(
        Effect.catchTag("ParseError", badUrl)
      )
    ),
    HttpRouter.get(
      "/thumbnail/:library/:id",
      Effect.flatMap(HttpRouter.schemaPathParams(ById), ({ id, library }) => thumbnail(preview, library, id)).pipe(Effect.catchTag("ParseError", badUrl))
    ),
    HttpRouter.get(
      "/gallery/:library",
      Effect.flatMap(
        Effect.zip(HttpRouter.schemaPathParams(OfLibrary), HttpServerRequest.schemaSearchParams(GalleryQuery)),
        ([{ library }, { limit }]) => gallery(preview, library, limit)
      ).pipe(Effect.catchTag("ParseError", badUrl))
    )
  )
