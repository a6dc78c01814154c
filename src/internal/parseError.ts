/**
 * A Schema parse error as one short line, for errors about input from the
 * network, from disk or from a person.
 *
 * Effect's formatters print the offending value: a large value makes a
 * message as large as itself, and a deeply nested one (a few kilobytes of
 * `[[[[…`) exhausts the stack, so the formatter throws where a typed error
 * was due. This shows at most a few issues, each as `path: message`, cut
 * to `maxLength`, and never throws.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type { ParseOptions } from "effect/SchemaAST"

/** Issues shown before "and N more". */
const SHOWN_ISSUES = 3

/** The error as one line of at most `maxLength` characters. */
export const describe = (error: ParseResult.ParseError, maxLength = 1024): string => {
  try {
    const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
    const shown = issues.slice(0, SHOWN_ISSUES).map((issue) =>
      `${issue.path.length > 0 ? `${issue.path.map(String).join(".")}: ` : ""}${issue.message.replace(/\s*\n\s*/g, " ").slice(0, maxLength)}`
    )
    const more = issues.length > SHOWN_ISSUES ? [`and ${issues.length - SHOWN_ISSUES} more`] : []
    return [...shown, ...more].join("; ").slice(0, maxLength)
  } catch {
    return "the value does not match its schema (too deeply nested to describe)"
  }
}

/**
 * The issue for a value the parser could not even look at: effect's parser converts some of the
 * input's fields with `String()` (a union's discriminant), which a decoded `{"toString": null}`
 * makes throw, and recurses into arbitrarily deep values, which overflows the stack.
 */
const unreadable = (schema: Schema.Schema.Any, u: unknown, cause: unknown) =>
  new ParseResult.ParseError({
    issue: new ParseResult.Type(schema.ast, u, `the value could not be read (${cause instanceof RangeError ? "nested too deeply" : "a field is not a plain value"})`)
  })

/** `Schema.decodeUnknownEither` that never throws: what the parser throws on a hostile value is a `ParseError`. */
export const decodeUnknownEither = <A, I>(schema: Schema.Schema<A, I>, options?: ParseOptions) => {
  const decode = Schema.decodeUnknownEither(schema, options)
  return (u: unknown): Either.Either<A, ParseResult.ParseError> => {
    try {
      return decode(u)
    } catch (cause) {
      return Either.left(unreadable(schema, u, cause))
    }
  }
}

/** `Schema.decodeUnknown` that never dies: what the parser throws on a hostile value is a `ParseError`. */
export const decodeUnknown = <A, I, R>(schema: Schema.Schema<A, I, R>, options?: ParseOptions) => {
  const decode = Schema.decodeUnknown(schema, options)
  return (u: unknown): Effect.Effect<A, ParseResult.ParseError, R> =>
    Effect.suspend(() => decode(u)).pipe(Effect.catchAllDefect((cause) => Effect.fail(unreadable(schema, u, cause))))
}
