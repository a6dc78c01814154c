/**
 * Remote media: locations and files as library records, indexing, presence
 * (`/weft/presence/1.0.0`) and reads of any member's files with byte ranges
 * (`/weft/media/1.0.0`).
 *
 * @since 0.1.0
 */
export * as Http from "./Http.js"
export * as Indexer from "./Indexer.js"
export * as Media from "./Media.js"
export * as Mime from "./Mime.js"
export * as Models from "./Models.js"
export * as Mounts from "./Mounts.js"
export * as Presence from "./Presence.js"
export * as Protocol from "./Protocol.js"
export * as PreviewMedia from "./preview/index.js"
