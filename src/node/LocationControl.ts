/**
 * The control procedures of a node's media locations (schemas only, so a
 * client loads them without the node; `Locations.controlHandlers` serves
 * them):
 *
 *   LocationAdd     library, root, name?          → stream of LocationEvent (Started, then
 *                                                   Progress… up to one with done) | LocationError
 *   LocationRescan  library, location             → stream of LocationEvent | LocationError
 *   LocationList    library?                      → LocationInfo[] | LocationError
 *   LocationRemove  library, location, keepRecords → LocationInfo (as it was) | LocationError
 *
 * `library` is a library's id or its name; `location` a location's id or
 * its name in that library. A scan runs as long as its caller reads it: a
 * caller that goes away stops it, with the batches already written kept
 * (a `LocationRescan` finishes the job).
 *
 * @since 0.1.0
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Schema from "effect/Schema"
import { isAbsolute } from "node:path"
import { PeerId } from "../transport/Transport.js"

/** A location could not be acted on. */
export class LocationError extends Schema.TaggedError<LocationError>("weft/node/LocationError")("LocationError", {
  reason: Schema.Literal(
    "DirectoryMissing", // the directory is not there (a drive unplugged, a typo)
    "NotADirectory", // the path is a file, or something else
    "UnknownLibrary", // no library of that id or name on this node
    "UnknownLocation", // no location of that id or name in the library
    "Ambiguous", // a name that several libraries or locations carry: use the id
    "NotHere", // a rescan of a location whose directory is on another node
    "Corrupt", // the node's record of its mounts could not be decoded
    "Io", // a read or write of the disk failed
    "Storage" // the library's database refused
  ),
  detail: Schema.String
}) {
  override get message(): string {
    return `location ${this.reason}: ${this.detail}`
  }
}

const Count = Schema.Int.pipe(Schema.between(0, Number.MAX_SAFE_INTEGER))

/** A directory on the node's machine: absolute (the node does not share the command's working directory). */
export const Root = Schema.String.pipe(
  Schema.minLength(1),
  Schema.maxLength(4096),
  Schema.filter((path) => isAbsolute(path) || `${path} is not an absolute path`)
)

/** A library's id or name, or a location's. */
export const Ref = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(256))

/** How a scan goes (see `Indexer.Progress`). */
export const Progress = Schema.Struct({
  location: Schema.String,
  seen: Count,
  hashedBytes: Count,
  added: Count,
  changed: Count,
  unchanged: Count,
  removed: Count,
  skipped: Count,
  done: Schema.Boolean
})
export type Progress = typeof Progress.Type

/** What a scan streams: where it runs and how many files it will meet, then its progress, the last one `done`. */
export const LocationEvent = Schema.Union(
  Schema.TaggedStruct("Started", { library: Schema.String, location: Schema.String, name: Schema.String, root: Schema.String, files: Count }),
  Schema.TaggedStruct("Progress", { progress: Progress })
)
export type LocationEvent = typeof LocationEvent.Type

/** A location as `weft location list` shows it. */
export const LocationInfo = Schema.Struct({
  library: Schema.String,
  id: Schema.String,
  name: Schema.String,
  /** Its directory, when this node holds it (online or not). */
  root: Schema.optionalWith(Schema.String, { exact: true }),
  /** Held here and its directory is there now. */
  online: Schema.Boolean,
  /** Connected peers it is online on (presence), fastest first. */
  peers: Schema.Array(Schema.Struct({ peer: PeerId, rtt: Schema.optionalWith(Schema.Number, { exact: true }) }))
})
export type LocationInfo = typeof LocationInfo.Type

/** The location procedures. */
export class Control extends RpcGroup.make(
  Rpc.make("LocationAdd", {
    payload: { library: Ref, root: Root, name: Schema.optional(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(256))) },
    success: LocationEvent,
    error: LocationError,
    stream: true
  }),
  Rpc.make("LocationRescan", { payload: { library: Ref, location: Ref }, success: LocationEvent, error: LocationError, stream: true }),
  Rpc.make("LocationList", { payload: { library: Schema.optional(Ref) }, success: Schema.Array(LocationInfo), error: LocationError }),
  Rpc.make("LocationRemove", { payload: { library: Ref, location: Ref, keepRecords: Schema.Boolean }, success: LocationInfo, error: LocationError })
) {}
