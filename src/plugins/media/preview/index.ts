/**
 * Preview media: thumbnails made once from a library's images, recorded in
 * its log, and their bytes fetched from any member that holds them
 * (`/weft/preview/2.0.0`).
 *
 * @since 0.1.0
 */
export * as Cache from "./Cache.js"
export * as Http from "./Http.js"
export * as Models from "./Models.js"
export * as Preview from "./Preview.js"
export * as Protocol from "./Protocol.js"
export * as Thumbnailer from "./Thumbnailer.js"
