/**
 * Node's built-in modules loaded on first use. A start pays for every module it loads (node:crypto
 * about 3 ms, node:tls and node:https about 3 ms, node:module a source-map reader it never uses), and
 * a restart needs none of them: they load when a keyed request, HTTPS, mDNS or a driver asks.
 * Node 20.16 and later hand them out through process.getBuiltinModule; on Node 18 the bundle is
 * CommonJS, and its own `require` does it.
 */

declare const require: ((id: string) => unknown) | undefined;

type BuiltinGetter = (id: string) => unknown;

/** The built-in module `id` ("node:crypto"), loaded now if it is not yet. */
export function loadBuiltin<T>(id: string): T {
  const get = (process as { getBuiltinModule?: BuiltinGetter }).getBuiltinModule;
  if (get !== undefined) return get(id) as T;
  if (typeof require === "function") return require(id) as T;
  throw new Error(`cannot load ${id}: neither process.getBuiltinModule nor require is available`);
}
