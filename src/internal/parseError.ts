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
import * as ParseResult from "effect/ParseResult"

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
