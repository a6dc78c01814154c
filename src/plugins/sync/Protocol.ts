/**
 * The sync plugin's protocol: `/weft/sync/3.0.0`, library-scoped. Its wire
 * format is `SyncProtocol` (`src/sync`), carried in length-prefixed frames
 * (`Framing`) after the host's library header.
 *
 * @since 0.1.0
 */
import { PROTOCOL_ID } from "../../sync/SyncProtocol.js"
import type { Protocol } from "../Plugin.js"

/** The protocol id and permission of sync streams. */
export const protocol: Protocol = { protocol: PROTOCOL_ID, permission: "library" }

/** Most bytes of one sync frame. */
export const MAX_FRAME_BYTES = 4 * 1024 * 1024
