/**
 * Preview media in a node (`Node`'s `preview` option): the preview plugin
 * (`plugins/media/preview/Preview.ts`) on the node's host, libraries,
 * engines and media mounts, its cache in a directory of the node
 * (`layerDirectory`: `media/previews`), and, in the background, for every
 * library the node has or joins while it runs, `Preview.watch`: the
 * thumbnails of the images held here made as their locations are indexed,
 * the cache and the thumbnail records kept to what the library still holds
 * (`Preview.collect`, after each burst of changes and every `collectEvery`), and, with `prefetch`,
 * every thumbnail of the library fetched from the members that hold them.
 *
 * A pass that fails (a library that cannot be read) is logged and tried
 * again after `retry`; nothing of it reaches the node's other services.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberMap from "effect/FiberMap"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { Libraries } from "../library/Libraries.js"
import type { Mounts } from "../plugins/media/Mounts.js"
import type { Presence } from "../plugins/media/Presence.js"
import * as Preview from "../plugins/media/preview/Preview.js"
import type { PluginHost } from "../plugins/PluginHost.js"
import type { TransportError } from "../transport/Transport.js"
import { Engines } from "./Engines.js"

/** How a node runs preview. */
export interface Options extends Omit<Preview.Options, "engine" | "directory"> {
  /** Where the thumbnail cache lives (`Node.layerDirectory`: `media/previews` in the node's directory). */
  readonly directory: string
  /** Make and collect thumbnails in the background, for every library (default true); off, only on demand. */
  readonly background?: boolean
  /** In the background, also fetch every thumbnail of each library this node lacks (default false: on demand only). */
  readonly prefetch?: boolean
  /** How long the library stays quiet before a background pass (default 500 ms). */
  readonly debounce?: Duration.DurationInput
  /** How often the background collects with nothing changed (default 10 minutes; see `Preview.Options.orphanGrace`). */
  readonly collectEvery?: Duration.DurationInput
  /** How soon a failed background pass is tried again (default 30 s). */
  readonly retry?: Duration.DurationInput
}

/** The background passes of every library, for as long as the scope. */
const background = (preview: Preview.Service, options: Options) =>
  Effect.gen(function*() {
    const libraries = yield* Libraries
    const running = yield* FiberMap.make<string>()
    const watch = (library: string) =>
      preview.watch(library, { prefetch: options.prefetch ?? false, debounce: options.debounce ?? Duration.millis(500) }).pipe(
        // once a burst of changes has settled, the cache (and the records) are kept to what the library still holds
        Stream.debounce(Duration.seconds(2)),
        // and now and then with nothing changed: an orphan record outlives its grace only until the next collect
        Stream.merge(Stream.tick(options.collectEvery ?? Duration.minutes(10))),
        Stream.tap(() => Effect.catchAll(preview.collect(library), (e) => Effect.logWarning(`preview of library ${library}: collect: ${e.message}`))),
        Stream.runDrain,
        Effect.tapError((e) => Effect.logWarning(`preview of library ${library}: ${e.message}`)),
        Effect.retry(Schedule.spaced(options.retry ?? Duration.seconds(30)))
      )
    const start = (ids: ReadonlyArray<string>) =>
      Effect.forEach(ids, (id) => FiberMap.run(running, id, watch(id), { onlyIfMissing: true }), { discard: true })
    const changes = yield* libraries.changes
    yield* start((yield* libraries.list).map((l) => l.id))
    yield* Effect.forkScoped(Stream.runForEach(changes, (list) => start(list.map((l) => l.id))))
  })

/** The preview plugin on the node's host and engines, with its background passes. */
export const layer = (options: Options): Layer.Layer<Preview.Preview, TransportError, PluginHost | Libraries | Engines | Mounts | Presence> =>
  Layer.scoped(
    Preview.Preview,
    Effect.gen(function*() {
      const engines = yield* Engines
      const { background: on, collectEvery: _, debounce: __, prefetch: ___, retry: ____, ...rest } = options
      const preview = yield* Preview.make({ ...rest, engine: engines.get })
      if (on ?? true) yield* background(preview, options)
      return preview
    })
  )
