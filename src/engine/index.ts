/**
 * The event-sourced engine: models, operation log, projection, mutate /
 * query / subscribe / ingest.
 *
 * @since 0.1.0
 */
export * as Database from "./Database.js"
export * as Engine from "./Engine.js"
export * as EngineError from "./EngineError.js"
export * as Migrations from "./Migrations.js"
export * as Model from "./Model.js"
export * as OperationLog from "./OperationLog.js"
export * as Projection from "./Projection.js"
