/**
 * A StoreFs over the real file system that counts every call, and that a test can tell to fail
 * (with an errno code) or to hold (until released) at a given step of a durable write.
 */

import * as fsp from "node:fs/promises";
import type { StoreFs } from "../src/state/store.ts";

/** The steps of writeFileDurably, in order: temp open, write, flush, rename, folder open, folder flush. */
export type Step = "open" | "write" | "sync" | "rename" | "dir-open" | "dir-sync" | "unlink";

/** An error as node's fs raises it. */
export function errnoError(code: string, step: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: injected at ${step}`), { code });
}

export class FaultFs implements StoreFs {
  /** Calls per step since the last reset(). */
  readonly counts = new Map<Step, number>();
  private faults = new Map<Step, string>();
  private held = new Map<Step, Array<() => void>>();
  private holding = new Set<Step>();
  private waitingListeners: Array<() => void> = [];

  /** Makes every later call of `step` fail with `code` until clear(). */
  fail(step: Step, code: string): void {
    this.faults.set(step, code);
  }

  /** Removes every fault. */
  clear(): void {
    this.faults.clear();
  }

  /** Makes every later call of `step` wait until release(step). */
  hold(step: Step): void {
    this.holding.add(step);
  }

  /** Lets every held call of `step` go on, and stops holding that step. */
  release(step: Step): void {
    this.holding.delete(step);
    const waiting = this.held.get(step) ?? [];
    this.held.delete(step);
    for (const go of waiting) go();
  }

  /** Clears every fault and lets every held call go on (a test's clean-up). */
  releaseAll(): void {
    this.clear();
    for (const step of [...this.holding, ...this.held.keys()]) this.release(step);
  }

  /** Lets the first held call of `step` go on; later ones keep being held. */
  releaseOne(step: Step): void {
    this.held.get(step)?.shift()?.();
  }

  /** How many calls of `step` are being held. */
  waiting(step: Step): number {
    return this.held.get(step)?.length ?? 0;
  }

  /** Resolves once `n` calls of `step` are held (bounded by the test's own timeout). */
  async whenWaiting(step: Step, n: number): Promise<void> {
    while (this.waiting(step) < n) await new Promise<void>((r) => this.waitingListeners.push(r));
  }

  /** Total calls of the steps that reach the disk. */
  get diskCalls(): number {
    let total = 0;
    for (const n of this.counts.values()) total += n;
    return total;
  }

  resetCounts(): void {
    this.counts.clear();
  }

  private async pass(step: Step): Promise<void> {
    this.counts.set(step, (this.counts.get(step) ?? 0) + 1);
    if (this.holding.has(step)) {
      await new Promise<void>((go) => {
        const list = this.held.get(step) ?? [];
        list.push(go);
        this.held.set(step, list);
        const listeners = this.waitingListeners;
        this.waitingListeners = [];
        for (const l of listeners) l();
      });
    }
    const code = this.faults.get(step);
    if (code !== undefined) throw errnoError(code, step);
  }

  async open(path: string, flags: string, mode?: number): Promise<fsp.FileHandle> {
    const isFolder = flags === "r";
    await this.pass(isFolder ? "dir-open" : "open");
    const handle = await fsp.open(path, flags, mode);
    // Only what the store uses; a new call there shows up here as a TypeError, on purpose.
    return {
      writeFile: async (data: string) => {
        await this.pass("write");
        await handle.writeFile(data);
      },
      sync: async () => {
        await this.pass(isFolder ? "dir-sync" : "sync");
        await handle.sync();
      },
      close: () => handle.close(),
    } as unknown as fsp.FileHandle;
  }

  async rename(from: string, to: string): Promise<void> {
    await this.pass("rename");
    await fsp.rename(from, to);
  }

  async unlink(path: string): Promise<void> {
    this.counts.set("unlink", (this.counts.get("unlink") ?? 0) + 1);
    await fsp.unlink(path);
  }
}
