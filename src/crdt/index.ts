/**
 * The pure core of Weft: clock, operations, merge rules. No I/O.
 *
 * @since 0.1.0
 */
export * as Binary from "./Binary.js"
export * as Hlc from "./Hlc.js"
export * as Names from "./Names.js"
export * as Operation from "./Operation.js"
export * as RecordState from "./RecordState.js"
export * as Replica from "./Replica.js"
export * as RichText from "./RichText.js"
export * as Timestamp from "./Timestamp.js"
export * as Value from "./Value.js"
export * as VersionVector from "./VersionVector.js"
