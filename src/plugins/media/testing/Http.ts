/**
 * Raw HTTP requests for media tests: one request per connection, as Node
 * sends it (the path is not normalised; any header, Host too, may be set).
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as NodeHttp from "node:http"

/** What came back: status, headers and the whole body. */
export interface Answer {
  readonly status: number
  readonly headers: NodeHttp.IncomingHttpHeaders
  readonly body: Buffer
}

/** One request to 127.0.0.1:`port`. */
export const request = (
  port: number,
  path: string,
  options: { readonly method?: string; readonly headers?: Record<string, string> } = {}
): Effect.Effect<Answer, Error> =>
  Effect.async<Answer, Error>((resume) => {
    const req = NodeHttp.request({ host: "127.0.0.1", port, path, method: options.method ?? "GET", headers: options.headers ?? {}, agent: false }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("error", (e) => resume(Effect.fail(e)))
      res.on("end", () => resume(Effect.succeed({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) })))
    })
    req.on("error", (e) => resume(Effect.fail(e)))
    req.end()
  })
