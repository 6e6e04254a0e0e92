/**
 * The seam between the write path and the hardware (docs/api.md §12): a PUT on a live document
 * that names an output's value is committed only once the I/O driver applied it. The pipeline
 * knows nothing of drivers; it hands each write to the gate, which commits it or refuses it.
 */

import type { Json } from "../state/documents.ts";

/** One validated PUT, before its commit. */
export interface GatedWrite {
  /** The endpoint written. */
  readonly endpoint: string;
  /** The path of the PUT below the endpoint (an object, or a leaf of it). */
  readonly segments: readonly string[];
  /** The members the body named. */
  readonly members: readonly string[];
  /** The document the PUT makes (already checked: docs/api.md §4's rules all passed). */
  readonly next: Json;
}

/**
 * Decides when a write may be committed. `commit` builds the document afresh from the latest one
 * (input values may have moved while the driver worked) and makes it durable; it throws as a
 * commit does (storage). The gate calls it at most once, and throws OutputRefused without calling it
 * when the outputs cannot be applied: nothing changed.
 */
export interface OutputGate {
  write(write: GatedWrite, commit: () => Promise<void>): Promise<void>;
}

/** Why an output was not applied. */
export type RefusalReason = "no-driver" | "refused" | "timeout" | "ended";

/** What error 18's `meta.detail` says for each reason: words only, never a value. */
const DETAILS: Readonly<Record<RefusalReason, string>> = {
  "no-driver": "no I/O driver is running, so the output was not changed",
  refused: "the I/O driver refused this value, so the output was not changed",
  timeout: "the I/O driver did not acknowledge the change in time, so the output was not changed",
  ended: "the I/O driver ended during the change, so the output was not changed",
};

/** An output the driver refused, did not acknowledge in time, or that no driver runs to apply. */
export class OutputRefused extends Error {
  override name = "OutputRefused";
  constructor(readonly reason: RefusalReason) {
    super(DETAILS[reason]);
  }
}
