/**
 * When each pair last let a request in (docs/api.md §8, `lastUsed`, `lastUsedFrom`): one record per
 * pair, updated in place by the request that passes (two field writes, no allocation, no disk), and
 * copied into the `apikeys` document at most every --last-use-interval seconds and at a clean stop,
 * so that a client that polls does not wear out an SD card.
 */

import type { UseRecord } from "./keys.ts";
import { displayAddress } from "./origins.ts";
import { isObject } from "../state/schema.ts";
import type { Json } from "../state/documents.ts";

/** Default seconds between two writes of the use records. */
export const DEFAULT_LAST_USE_INTERVAL_S = 600;

/** The use records, by pair name. */
export class LastUse {
  readonly #records = new Map<string, UseRecord>();
  /** The same records in a list, and what each said (whole seconds, address) when `unchanged` last saw them. */
  readonly #list: UseRecord[] = [];
  #seenSeconds: number[] = [];
  #seenFrom: string[] = [];

  /** The record of a pair, made from its stored members the first time. */
  recordOf(name: string, pair: Record<string, unknown>): UseRecord {
    let record = this.#records.get(name);
    if (record === undefined) {
      const seconds = pair["lastUsed"];
      const from = pair["lastUsedFrom"];
      record = { ms: typeof seconds === "number" ? seconds * 1000 : 0, from: typeof from === "string" ? from : "" };
      this.#records.set(name, record);
      this.#list.push(record);
    }
    return record;
  }

  /**
   * Whether no record changed its whole second or its address since the last call that said false:
   * answers built from merged() stay good until then. A few comparisons, no allocation.
   */
  unchanged(): boolean {
    const list = this.#list;
    let same = list.length === this.#seenSeconds.length;
    for (let i = 0; same && i < list.length; i++) {
      const r = list[i] as UseRecord;
      same = Math.floor(r.ms / 1000) === this.#seenSeconds[i] && r.from === this.#seenFrom[i];
    }
    if (same) return true;
    this.#seenSeconds = list.map((r) => Math.floor(r.ms / 1000));
    this.#seenFrom = list.map((r) => r.from);
    return false;
  }

  /** Calls `visit` with each record. */
  forEach(visit: (name: string, record: UseRecord) => void): void {
    for (const [name, record] of this.#records) visit(name, record);
  }

  /**
   * The document with every pair's `lastUsed`/`lastUsedFrom` as the records say; the document
   * itself when they already agree (nothing to write, nothing to copy for an answer).
   */
  merged(doc: Json): Json {
    if (!isObject(doc) || !Array.isArray(doc["keys"])) return doc;
    let keys: Json[] | undefined;
    doc["keys"].forEach((pair, i) => {
      if (!isObject(pair) || !("lastUsed" in pair)) return;
      const record = this.#records.get(String(pair["name"]));
      if (record === undefined || record.ms === 0) return;
      const lastUsed = Math.floor(record.ms / 1000);
      const lastUsedFrom = displayAddress(record.from);
      if (pair["lastUsed"] === lastUsed && pair["lastUsedFrom"] === lastUsedFrom) return;
      keys ??= [...(doc["keys"] as Json[])];
      keys[i] = { ...pair, lastUsed, lastUsedFrom };
    });
    return keys === undefined ? doc : { ...doc, keys };
  }
}
