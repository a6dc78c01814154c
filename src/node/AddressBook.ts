/**
 * The address book: where peers were last reached, so a node can reconnect
 * to the peers it shares libraries with after a restart, without mDNS or
 * addresses typed again.
 *
 * The book stores what it is given; what to give it is the caller's policy.
 * `weft serve` keeps library members only, at addresses they announced
 * themselves (identify) or that it dialled and reached, never an
 * unauthenticated mDNS advert. Each peer keeps
 * its most recent `MAX_ADDRESSES` addresses, newest first; the book keeps
 * the `MAX_PEERS` peers seen most recently. `layerFile` persists it as JSON,
 * validated with Schema on load and replaced atomically on every change;
 * `layerMemory` is for tests.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import { withoutPeer } from "../transport/PeerAddress.js"
import { PeerId } from "../transport/Transport.js"
import * as JsonFile from "../internal/jsonFile.js"

/** Most addresses kept per peer. */
export const MAX_ADDRESSES = 8

/** `fresh` addresses first, then the `known` ones not among them, at most `MAX_ADDRESSES`. */
export const merge = (fresh: ReadonlyArray<string>, known: ReadonlyArray<string>): ReadonlyArray<string> =>
  [...new Set([...fresh, ...known])].slice(0, MAX_ADDRESSES)
/** Most peers kept. */
export const MAX_PEERS = 1024
/** Longest address kept (a multiaddr). */
export const MAX_ADDRESS_LENGTH = 512
/**
 * Most bytes of the file read: what the bounds above allow however the
 * addresses are spelled (a character takes up to 6 bytes as JSON, `\u001f`),
 * with room for the JSON around them; the book never writes a file it
 * would not read back.
 */
const MAX_FILE_BYTES = MAX_PEERS * (MAX_ADDRESSES * (6 * MAX_ADDRESS_LENGTH + 16) + 1024)

/** A multiaddr, as text. */
export const Address = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(MAX_ADDRESS_LENGTH), Schema.startsWith("/"))

/** What the book knows of one peer. */
export const Entry = Schema.Struct({
  peer: PeerId,
  /** Newest first. */
  addresses: Schema.Array(Address).pipe(Schema.maxItems(MAX_ADDRESSES)),
  /** When an address of it was last remembered (ms since the epoch). */
  seen: Schema.Number
})
export type Entry = typeof Entry.Type

const File = Schema.Struct({ version: Schema.Literal(1), peers: Schema.Array(Entry).pipe(Schema.maxItems(MAX_PEERS)) })

/** The address book could not be read or written. */
export class AddressBookError extends Schema.TaggedError<AddressBookError>("weft/AddressBookError")("AddressBookError", {
  reason: Schema.Literal("Corrupt", "Io"),
  detail: Schema.String
}) {
  override get message(): string {
    return `address book ${this.reason}: ${this.detail}`
  }
}

/** Where peers were reached. */
export class AddressBook extends Context.Tag("weft/node/AddressBook")<AddressBook, {
  /** A peer's addresses, newest first (none if unknown). */
  readonly get: (peer: PeerId) => Effect.Effect<ReadonlyArray<string>>
  readonly list: Effect.Effect<ReadonlyArray<Entry>>
  /**
   * Records addresses where `peer` was reached (newest first); a `/p2p/<id>`
   * suffix is dropped, and addresses that are not multiaddrs or are too long
   * are ignored. Persisted before it returns when anything changed.
   */
  readonly remember: (peer: PeerId, addresses: ReadonlyArray<string>) => Effect.Effect<void, AddressBookError>
}>() {}

const isAddress = Schema.is(Address)

/** How long an unchanged peer seen again keeps its place before it is moved up (and the file written). */
const REFRESH_MILLIS = 60_000

const build = (
  initial: ReadonlyArray<Entry>,
  persist: (entries: ReadonlyArray<Entry>) => Effect.Effect<void, AddressBookError>
): Effect.Effect<AddressBook["Type"]> =>
  Effect.gen(function*() {
    const state = yield* Ref.make(initial)
    const lock = yield* Effect.makeSemaphore(1)
    return {
      get: (peer) => Effect.map(Ref.get(state), (entries) => entries.find((e) => e.peer === peer)?.addresses ?? []),
      list: Ref.get(state),
      remember: (peer, addresses) =>
        lock.withPermits(1)(Effect.gen(function*() {
          // kept by peer, so without the id
          const fresh = addresses.map(withoutPeer).filter(isAddress)
          if (fresh.length === 0) return
          const entries = yield* Ref.get(state)
          const previous = entries.find((e) => e.peer === peer)
          const merged = merge(fresh, previous?.addresses ?? [])
          const seen = yield* Clock.currentTimeMillis
          // the same addresses in the same order (a reconnect seen again): nothing to write, unless the
          // peer's place among the most recently seen is due a refresh (eviction goes by that place)
          if (
            previous !== undefined && merged.join("\n") === previous.addresses.join("\n") &&
            (entries[0] === previous || seen - previous.seen < REFRESH_MILLIS)
          ) return
          const next = [{ peer, addresses: merged, seen }, ...entries.filter((e) => e.peer !== peer)].slice(0, MAX_PEERS)
          // once the write starts, memory follows it (an interrupted caller leaves the two agreeing)
          yield* Effect.uninterruptible(Effect.zipRight(persist(next), Ref.set(state, next)))
        }))
    }
  })

/** An address book held in memory. */
export const layerMemory = (initial: ReadonlyArray<Entry> = []): Layer.Layer<AddressBook> =>
  Layer.effect(AddressBook, build(initial, () => Effect.void))

const errors = {
  io: (detail: string) => new AddressBookError({ reason: "Io", detail }),
  corrupt: (detail: string) => new AddressBookError({ reason: "Corrupt", detail })
}

/** An address book persisted in a JSON file (empty if the file does not exist). */
export const layerFile = (path: string): Layer.Layer<AddressBook, AddressBookError> =>
  Layer.effect(
    AddressBook,
    Effect.flatMap(
      JsonFile.read(path, File, errors, MAX_FILE_BYTES),
      (file) =>
        build(
          Option.match(file, { onNone: () => [], onSome: (f) => f.peers }),
          (peers) => JsonFile.write(path, { version: 1, peers }, errors.io)
        )
    )
  )
