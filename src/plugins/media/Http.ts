/**
 * Media over HTTP, for apps and web views: a library's files served on a
 * local address whether this node holds them or another member does, built
 * on `@effect/platform`'s HTTP server (Node's, through
 * `@effect/platform-node`). The bytes come from `Media.read`: this node's
 * disk, or the fastest peer that holds the location, with failover; they
 * are pulled as the HTTP client takes them (backpressure), never buffered
 * whole.
 *
 * Routes (`GET`, and `HEAD` for the same headers without the body):
 *
 *   /files/<library>/<file id>        a file by its record id
 *   /hash/<library>/<sha256 hex>      a file by its content (any copy)
 *   /play/<library>/<file id>         a page whose <video> plays /files/<library>/<file id>
 *
 * and the `routes` given (preview's `/thumbnail` and `/gallery`: `preview/Http.ts`), behind the same checks.
 *
 * A file's answer: `200` with the whole file, or `206` for one satisfiable
 * `Range: bytes=…` (`first-last`, `first-`, `-suffix`) with `Content-Range`;
 * `416` with `Content-Range: bytes *\/size` when no range of a well-formed
 * `Range` overlaps the file; several ranges, a malformed header, another
 * unit, a `HEAD`, or an `If-Range` that no longer matches are answered with
 * the whole file (RFC 9110 §14.2). Headers: `Content-Type` from the file's
 * name (`Mime`), `Content-Length`, `Accept-Ranges: bytes`, a strong `ETag`
 * (the content hash), `Last-Modified`; `If-None-Match` naming the ETag is
 * `304`. File responses carry `Content-Security-Policy: sandbox` and
 * `X-Content-Type-Options: nosniff`, so an HTML or SVG file of the library
 * cannot run script with the server's origin.
 *
 * Errors, before the first byte: `NotFound` 404, `Offline` 503, `Changed`
 * 409, `Unsafe` 403, `RangeNotSatisfiable` 416, `Failed` (every source
 * failed) 502; a malformed library, id or hash in the URL is 400. A `GET`
 * waits for the first bytes before it answers, so a file that cannot be
 * read gets its status; a source that fails later is replaced as `Media`
 * does, and when none is left the connection is cut (Node's response is
 * destroyed: the client sees the connection aborted short of the
 * `Content-Length`, never a complete-looking body). A `HEAD` is answered as
 * a `GET` would be: a holder serves one byte of the file first, so a file
 * online nowhere is `503` (and a changed one `409`) there too.
 *
 * Access, checked on every request, before anything else:
 * - `Host` must be the bound address (`127.0.0.1:PORT`, and for a loopback
 *   address `localhost:PORT` and `[::1]:PORT`): else `403`. A page
 *   elsewhere that points a name of its own at 127.0.0.1 (DNS rebinding)
 *   sends its own name, and is refused. So is a request whose `Origin` is
 *   another (a browser's cross-origin request: no CORS is offered).
 * - the node's per-run token (`makeToken`), as `Authorization: Bearer
 *   <token>`, as `?token=<token>` in the URL, or as the cookie
 *   `weft-token-<PORT>` (HttpOnly, SameSite=Strict) that a request with
 *   `?token=` sets, so a page opened once with the token plays its
 *   `<video src="/files/…">` with no token in it. Else `401`. The cookie
 *   being SameSite=Strict, a request from a page of another site carries
 *   no token.
 * - other methods than `GET` and `HEAD` are `405`.
 *
 * ```ts
 * const token = Http.makeToken()
 * const http = yield* Http.make({ token, hostname: "127.0.0.1", port: 8080 }) // needs Media.Media and a Scope
 * console.log(http.url(`/play/${library}/${fileId}`)) // http://127.0.0.1:8080/play/…?token=…
 * ```
 *
 * @since 0.1.0
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import type * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { randomBytes } from "node:crypto"
import * as NodeHttp from "node:http"
import * as Headers from "./http/headers.js"
import { Media, type MediaError } from "./Media.js"
import * as Mime from "./Mime.js"
import { Hash } from "./Models.js"
import type * as Protocol from "./Protocol.js"

/** Options of the server. */
export interface Options {
  /** The per-run secret every request must show (`makeToken`): 16 to 512 of `[A-Za-z0-9._~-]`, safe in a URL and a cookie. */
  readonly token: string
  /** The address to listen on (default `127.0.0.1`: keep it loopback). */
  readonly hostname?: string
  /** The port (default 0: any free one; the bound one is in `address`). */
  readonly port?: number
  /** More routes (preview's `/thumbnail` and `/gallery`: `preview/Http.ts`), served behind the same checks. */
  readonly routes?: HttpRouter.HttpRouter
}

/** A running server. */
export interface Service {
  /** Where it listens. */
  readonly address: { readonly hostname: string; readonly port: number }
  /** `http://HOST:PORT`. */
  readonly origin: string
  /** The URL of `path` (from `/`) with the token, for a person or an app to open. */
  readonly url: (path: string) => string
}

/** Media over HTTP on a node. */
export class MediaHttp extends Context.Tag("weft/plugins/media/MediaHttp")<MediaHttp, Service>() {}

const TOKEN = /^[A-Za-z0-9._~-]{16,512}$/

/** A fresh per-run token: 32 random bytes in base64url. */
export const makeToken = (): string => randomBytes(32).toString("base64url")

/** A library id as it may appear in a URL: a `LibraryId`, but never `.` or `..`. */
const UrlLibrary = Schema.String.pipe(Schema.pattern(/^(?!\.{1,2}$)[A-Za-z0-9._~-]{1,128}$/))
/** A record id as it may appear in a URL. */
const UrlRecordId = Schema.String.pipe(Schema.pattern(/^(?!\.{1,2}$)[A-Za-z0-9._~-]{1,256}$/))
const ById = Schema.Struct({ library: UrlLibrary, id: UrlRecordId })
const ByHash = Schema.Struct({ library: UrlLibrary, hash: Hash })

/** The HTTP status of each reason a read fails. */
export const STATUS: Readonly<Record<Protocol.Reason, number>> = {
  NotFound: 404,
  Offline: 503,
  Changed: 409,
  RangeNotSatisfiable: 416,
  Unsafe: 403,
  Failed: 502
}

const text = (status: number, body: string, headers: Record<string, string> = {}) =>
  HttpServerResponse.text(`${body}\n`, { status, headers: { "cache-control": "no-store", ...headers } })

const failure = (error: MediaError) =>
  text(
    STATUS[error.reason],
    `${error.reason}: ${error.detail}`,
    error.reason === "RangeNotSatisfiable" && error.size !== undefined ? { "content-range": `bytes */${error.size}` } : {}
  )

// the file's first chunk, or none at its end: pulled before the status is sent, so a read that fails at once has its own
const firstChunk = <A, E>(pull: Effect.Effect<A, Option.Option<E>>) =>
  Effect.catchAll(Effect.map(pull, Option.some), Option.match({ onNone: () => Effect.succeed(Option.none<A>()), onSome: Effect.fail }))

/** Answers a request for a file of `library`, in the request's scope. */
const file = (media: Media["Type"], library: string, ref: Protocol.FileRef) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const headers = request.headers
    const get = request.method === "GET"
    const probe = yield* media.read(library, ref)
    const tag = Headers.etag(probe.file.hash)
    const lastModified = new Date(probe.file.mtime).toUTCString()
    const common = {
      "accept-ranges": "bytes",
      "etag": tag,
      "last-modified": lastModified,
      "cache-control": "private, no-cache",
      "content-security-policy": "sandbox",
      "x-content-type-options": "nosniff"
    }
    if (Headers.noneMatch(headers["if-none-match"], tag)) return HttpServerResponse.empty({ status: 304, headers: common })
    const asked = get && Headers.ifRange(headers["if-range"], tag, lastModified)
      ? Headers.parseRange(headers["range"], probe.file.size)
      : { _tag: "Whole" as const }
    if (asked._tag === "Unsatisfiable") {
      return text(416, `RangeNotSatisfiable: the file has ${probe.file.size} bytes`, { "content-range": `bytes */${probe.file.size}` })
    }
    const reading = asked._tag === "Part" ? yield* media.read(library, ref, { offset: asked.offset, length: asked.length }) : probe
    const { range } = reading
    const partial = asked._tag === "Part"
    const answer = {
      ...common,
      "content-type": Mime.of(reading.file.path),
      "content-length": String(range.length),
      ...(partial ? { "content-range": `bytes ${range.offset}-${range.offset + range.length - 1}/${reading.file.size}` } : {})
    }
    const status = partial ? 206 : 200
    if (!get) {
      // answered as a GET would be: some holder must serve a byte of the file (else Offline, Changed … as for a GET)
      yield* Stream.runDrain((yield* media.read(library, ref, { length: 1 })).bytes)
      return HttpServerResponse.empty({ status, headers: answer })
    }
    const pull = yield* Stream.toPull(reading.bytes)
    const first = yield* firstChunk(pull)
    // once the status is sent, a read that fails must not look like a complete body: the connection is cut
    // (Node's response destroyed), so the client sees it aborted short of its Content-Length
    const abort = Effect.sync(() => NodeHttpServerRequest.toServerResponse(request)?.destroy())
    const body = Option.match(first, {
      onNone: () => Stream.empty,
      onSome: (chunk) => Stream.concat(Stream.fromChunk(chunk), Stream.repeatEffectChunkOption(pull)).pipe(Stream.tapError(() => abort))
    })
    return HttpServerResponse.stream(body, { status, headers: answer, contentType: answer["content-type"], contentLength: range.length })
  }).pipe(Effect.catchTag("MediaError", (e) => Effect.succeed(failure(e))))

const page = (library: string, id: string) => {
  const src = `/files/${encodeURIComponent(library)}/${encodeURIComponent(id)}`
  return HttpServerResponse.html(
    `<!doctype html>\n<html><head><meta charset="utf-8"><title>${id}</title></head>` +
      `<body style="margin:0;background:#000"><video id="player" controls preload="metadata" src="${src}" style="width:100%;max-height:100vh"></video></body></html>\n`
  ).pipe(HttpServerResponse.setHeaders({
    "cache-control": "no-store",
    "content-security-policy": "default-src 'none'; media-src 'self'; style-src 'unsafe-inline'",
    "x-content-type-options": "nosniff"
  }))
}

const badUrl = () => Effect.succeed(text(400, "the URL names no valid library, file id or hash"))

/** The routes, behind no check: `app` puts the checks in front. */
const router = (media: Media["Type"]) =>
  HttpRouter.empty.pipe(
    HttpRouter.get(
      "/files/:library/:id",
      Effect.flatMap(HttpRouter.schemaPathParams(ById), ({ id, library }) => file(media, library, { id })).pipe(Effect.catchTag("ParseError", badUrl))
    ),
    HttpRouter.get(
      "/hash/:library/:hash",
      Effect.flatMap(HttpRouter.schemaPathParams(ByHash), ({ hash, library }) => file(media, library, { hash })).pipe(Effect.catchTag("ParseError", badUrl))
    ),
    HttpRouter.get(
      "/play/:library/:id",
      Effect.map(HttpRouter.schemaPathParams(ById), ({ id, library }) => page(library, id)).pipe(Effect.catchTag("ParseError", badUrl))
    )
  )

/**
 * The HTTP app of a server bound to `address`: the access checks (Host,
 * method, token), then the routes. For a server of one's own; `make` runs it.
 */
export const app = (
  media: Media["Type"],
  options: { readonly token: string; readonly address: Service["address"]; readonly routes?: HttpRouter.HttpRouter }
) => {
  const routes = options.routes === undefined ? router(media) : HttpRouter.concat(router(media), options.routes)
  const allowed = Headers.allowedHosts(options.address.hostname, options.address.port)
  const cookie = Headers.cookieName(options.address.port)
  return Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    if (!Headers.hostAllowed(request.headers["host"], allowed)) return text(403, "this server answers only requests for its own address")
    if (!Headers.originAllowed(request.headers["origin"], allowed)) return text(403, "this server answers no requests from pages of other origins")
    if (request.method !== "GET" && request.method !== "HEAD") return text(405, "only GET and HEAD", { allow: "GET, HEAD" })
    const search = request.url.indexOf("?")
    const query = search === -1 ? undefined : new URLSearchParams(request.url.slice(search + 1)).get("token") ?? undefined
    const byQuery = Headers.tokenMatches(query, options.token)
    if (!byQuery && !Headers.tokenMatches(Headers.bearer(request.headers["authorization"]), options.token) && !Headers.tokenMatches(request.cookies[cookie], options.token)) {
      return text(401, "the node's token is needed (Authorization: Bearer, ?token= or its cookie)", { "www-authenticate": "Bearer" })
    }
    const response = yield* Effect.catchTag(routes, "RouteNotFound", () => Effect.succeed(text(404, "no such route")))
    return byQuery ? HttpServerResponse.unsafeSetCookie(response, cookie, options.token, { httpOnly: true, sameSite: "strict", path: "/" }) : response
  })
}

/** Listens on `options`' address and serves the `Media` in context there until the scope closes. */
export const make = (options: Options): Effect.Effect<Service, HttpServerError.ServeError, Media | Scope.Scope> =>
  Effect.gen(function*() {
    const media = yield* Media
    // a programming error, not a condition to recover from: `makeToken`'s never fails this
    if (!TOKEN.test(options.token)) return yield* Effect.dieMessage("the HTTP token must be 16 to 512 of [A-Za-z0-9._~-]")
    const hostname = options.hostname ?? "127.0.0.1"
    const server = yield* NodeHttpServer.make(() => NodeHttp.createServer(), { host: hostname, port: options.port ?? 0 })
    const port = server.address._tag === "TcpAddress" ? server.address.port : 0
    const address = { hostname, port }
    yield* server.serve(app(media, { token: options.token, address, ...(options.routes === undefined ? {} : { routes: options.routes }) }))
    const host = hostname.includes(":") ? `[${hostname}]` : hostname
    const origin = `http://${host}:${port}`
    return {
      address,
      origin,
      url: (path) => {
        const url = new URL(path, origin)
        url.searchParams.set("token", options.token)
        return url.href
      }
    }
  })

/** The server as a layer: `weft serve --http HOST:PORT` adds it beside the media layer. */
export const layer = (options: Options): Layer.Layer<MediaHttp, HttpServerError.ServeError, Media> => Layer.scoped(MediaHttp, make(options))
