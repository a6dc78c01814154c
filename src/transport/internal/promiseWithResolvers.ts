/**
 * `Promise.withResolvers` (ES2024) for Node 20.
 *
 * js-libp2p 3 and its dependencies call it at run time (never while their
 * modules load), and Node has it only from 22 on. Importing this module
 * installs the standard method when, and only when, the runtime lacks it; on
 * Node 22+ it does nothing. It adds a missing static method, patching no
 * prototype and replacing nothing that exists.
 *
 * @internal
 */

interface Resolvers<T> {
  readonly promise: Promise<T>
  readonly resolve: (value: T | PromiseLike<T>) => void
  readonly reject: (reason?: unknown) => void
}

const promise = Promise as PromiseConstructor & { withResolvers?: unknown }

if (typeof promise.withResolvers !== "function") {
  Object.defineProperty(Promise, "withResolvers", {
    configurable: true,
    writable: true,
    enumerable: false,
    // as the standard does, construct with `this`, so subclasses get their own kind of promise
    value: function withResolvers<T>(this: PromiseConstructor): Resolvers<T> {
      let resolve!: (value: T | PromiseLike<T>) => void
      let reject!: (reason?: unknown) => void
      const promise = new this<T>((res, rej) => {
        resolve = res
        reject = rej
      })
      return { promise, resolve, reject }
    }
  })
}

export {}
