/**
 * The store's two promises, checked against models rather than hoped for:
 * - writeFileDurably, on a simulated disk that forgets everything not flushed: a power cut after
 *   any single file-system call leaves the old or the new file, never a torn one, and once the
 *   call has resolved only the new one;
 * - CommitQueue: readers see only durable versions, changes staged during a flush share the next
 *   one, a failed flush fails everything built on it and leaves memory and disk as they were.
 */

import type { FileHandle } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { CommitQueue, writeFileDurably, type StoreFs } from "../src/state/store.ts";

const DIR = "/state";
const TARGET = "/state/properties.json";
const TORN = "<torn>";

interface Inode {
  data: string;
  /** Content as of the last fsync of the file (what a power cut keeps). */
  synced: string | undefined;
  dirty: boolean;
}

/**
 * A folder on a disk with a write-back cache, modelled pessimistically: a file's content survives a
 * power cut only as of its last fsync (anything written since may come back torn), and a name
 * survives as of the last fsync of the folder, or as any later state of that name the disk may
 * already have written out.
 */
class SimulatedDisk implements StoreFs {
  readonly names = new Map<string, Inode>();
  /** Per name, every inode (or absence) a power cut might leave it pointing at. */
  private possible = new Map<string, Set<Inode | undefined>>();
  readonly calls: string[] = [];
  /** Called after every file-system call: the place to check what a power cut would leave. */
  afterCall: () => void = () => undefined;

  constructor(initial: Record<string, string>) {
    for (const [path, data] of Object.entries(initial)) {
      const inode = { data, synced: data, dirty: false };
      this.names.set(path, inode);
      this.possible.set(path, new Set([inode]));
    }
  }

  /** The contents a power cut right now might leave at `path` (undefined: no such file). */
  outcomes(path: string): Set<string | undefined> {
    const out = new Set<string | undefined>();
    for (const inode of this.possible.get(path) ?? [undefined]) {
      out.add(inode === undefined ? undefined : inode.dirty || inode.synced === undefined ? TORN : inode.synced);
    }
    return out;
  }

  private point(path: string, inode: Inode | undefined): void {
    if (inode === undefined) this.names.delete(path);
    else this.names.set(path, inode);
    const set = this.possible.get(path) ?? new Set<Inode | undefined>(this.names.has(path) ? [] : [undefined]);
    set.add(inode);
    this.possible.set(path, set);
  }

  private record(call: string): void {
    this.calls.push(call);
    this.afterCall();
  }

  async open(path: string, flags: string): Promise<FileHandle> {
    if (path === DIR) {
      this.record("open dir");
      return this.handle(() => {
        // A folder flush makes its names what they are now, and nothing else.
        for (const name of this.possible.keys()) this.possible.set(name, new Set([this.names.get(name)]));
        this.record("sync dir");
      });
    }
    let inode = this.names.get(path);
    if (flags === "wx") {
      if (inode !== undefined) throw Object.assign(new Error("exists"), { code: "EEXIST" });
      inode = { data: "", synced: undefined, dirty: false };
      if (!this.possible.has(path)) this.possible.set(path, new Set([undefined]));
      this.point(path, inode);
    } else if (flags === "w") {
      if (inode === undefined) {
        inode = { data: "", synced: undefined, dirty: false };
        this.point(path, inode);
      } else {
        inode.data = "";
        inode.dirty = true;
      }
    } else {
      throw new Error(`unexpected open ${path} ${flags}`);
    }
    const file = inode;
    this.record(`open ${path} ${flags}`);
    return this.handle(
      () => {
        file.synced = file.data;
        file.dirty = false;
        this.record(`sync ${path}`);
      },
      (text) => {
        file.data = text;
        file.dirty = true;
        this.record(`write ${path}`);
      },
    );
  }

  private handle(sync: () => void, write?: (text: string) => void): FileHandle {
    return {
      writeFile: async (text: string) => write?.(text),
      sync: async () => sync(),
      close: async () => undefined,
    } as unknown as FileHandle;
  }

  async rename(from: string, to: string): Promise<void> {
    const inode = this.names.get(from);
    if (inode === undefined) throw Object.assign(new Error("no such file"), { code: "ENOENT" });
    this.point(to, inode);
    this.point(from, undefined);
    this.record(`rename ${from} ${to}`);
  }

  async unlink(path: string): Promise<void> {
    this.point(path, undefined);
    this.record(`unlink ${path}`);
  }
}

describe("writeFileDurably under a power cut after any call", () => {
  it("leaves the old or the new document, and only the new one once it has resolved", async () => {
    const disk = new SimulatedDisk({ [TARGET]: "old" });
    const seen = new Set<string | undefined>();
    disk.afterCall = () => {
      for (const outcome of disk.outcomes(TARGET)) {
        seen.add(outcome);
        expect(["old", "new"]).toContain(outcome);
      }
    };
    await writeFileDurably(disk, DIR, "properties.json", "new");
    expect([...disk.outcomes(TARGET)]).toEqual(["new"]);
    // Both outcomes were possible on the way (the model was really exercised), never a torn one.
    expect(seen).toEqual(new Set(["old", "new"]));
    expect(disk.calls).toEqual([
      expect.stringMatching(/^open \/state\/\.properties\.json\.\d+-\d+\.tmp wx$/),
      expect.stringMatching(/^write /),
      expect.stringMatching(/^sync \/state\/\.properties/),
      expect.stringMatching(/^rename \/state\/\.properties\.json\.\d+-\d+\.tmp \/state\/properties\.json$/),
      "open dir",
      "sync dir",
    ]);
    expect([...disk.names.keys()]).toEqual([TARGET]);
  });

  it("the model does catch a torn write (writing the file in place)", async () => {
    const disk = new SimulatedDisk({ [TARGET]: "old" });
    const handle = await disk.open(TARGET, "w");
    await handle.writeFile("new");
    expect(disk.outcomes(TARGET)).toContain(TORN);
  });

  it("a failed rename leaves the old document and no temporary file", async () => {
    const disk = new SimulatedDisk({ [TARGET]: "old" });
    disk.rename = async () => {
      throw Object.assign(new Error("I/O error"), { code: "EIO" });
    };
    await expect(writeFileDurably(disk, DIR, "properties.json", "new")).rejects.toMatchObject({ code: "EIO" });
    expect([...disk.outcomes(TARGET)]).toEqual(["old"]);
    expect([...disk.names.keys()]).toEqual([TARGET]);
  });
});

/** A write function whose calls wait until the test lets them finish (or fail). */
function gatedWrites(): {
  write: (text: string) => Promise<void>;
  written: string[];
  pending: Array<{ text: string; finish: (error?: Error) => void }>;
} {
  const written: string[] = [];
  const pending: Array<{ text: string; finish: (error?: Error) => void }> = [];
  const write = (text: string): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      pending.push({
        text,
        finish: (error) => {
          if (error !== undefined) return reject(error);
          written.push(text);
          resolve();
        },
      });
    });
  return { write, written, pending };
}

/** Lets every promise callback that can run, run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
}

function state(promise: Promise<unknown>): { done: boolean; error: unknown } {
  const s = { done: false, error: undefined as unknown };
  promise.then(
    () => (s.done = true),
    (e: unknown) => {
      s.done = true;
      s.error = e;
    },
  );
  return s;
}

type Doc = Readonly<Record<string, number>>;
const text = (doc: Doc): string => JSON.stringify(doc);

describe("CommitQueue", () => {
  it("shows a change only once it is durable, and commits changes staged meanwhile with one write", async () => {
    const gate = gatedWrites();
    const commits: Doc[] = [];
    const q = new CommitQueue<Doc>({ a: 0, b: 0 }, text, gate.write, (d) => commits.push(d));

    const first = state(q.change({ ...q.latest, a: 1 }));
    await settle();
    expect(gate.pending.map((p) => p.text)).toEqual(['{"a":1,"b":0}']);
    const more = [1, 2, 3].map((n) => state(q.change({ ...q.latest, b: n })));
    expect(q.committed).toEqual({ a: 0, b: 0 });
    expect(q.latest).toEqual({ a: 1, b: 3 });

    gate.pending.shift()?.finish();
    await settle();
    expect(first).toEqual({ done: true, error: undefined });
    expect(q.committed).toEqual({ a: 1, b: 0 });
    expect(more.some((s) => s.done)).toBe(false);
    // The three later changes make one write, of the latest document.
    expect(gate.pending.map((p) => p.text)).toEqual(['{"a":1,"b":3}']);

    gate.pending.shift()?.finish();
    await settle();
    expect(more.every((s) => s.done && s.error === undefined)).toBe(true);
    expect(gate.written).toEqual(['{"a":1,"b":0}', '{"a":1,"b":3}']);
    expect(commits).toEqual([{ a: 1, b: 0 }, { a: 1, b: 3 }]);
  });

  it("writes nothing for a change that leaves the document's text as it is", async () => {
    const gate = gatedWrites();
    const q = new CommitQueue<Doc>({ a: 0 }, text, gate.write, () => undefined);
    await q.change({ a: 0 });
    expect(gate.pending).toEqual([]);
    expect(q.committed).toEqual({ a: 0 });
  });

  it("a failed write fails every change staged on it and leaves memory as it was", async () => {
    const gate = gatedWrites();
    const q = new CommitQueue<Doc>({ a: 0, b: 0 }, text, gate.write, () => undefined);
    const first = state(q.change({ ...q.latest, a: 1 }));
    await settle();
    const staged = state(q.change({ ...q.latest, b: 1 }));
    gate.pending.shift()?.finish(Object.assign(new Error("disk full"), { code: "ENOSPC" }));
    // The queue tries to put back what was on disk; that fails too here.
    await settle();
    gate.pending.shift()?.finish(Object.assign(new Error("disk full"), { code: "ENOSPC" }));
    await settle();
    expect(first.error).toMatchObject({ code: "ENOSPC" });
    expect(staged.error).toMatchObject({ code: "ENOSPC" });
    expect(q.committed).toEqual({ a: 0, b: 0 });
    expect(q.latest).toEqual({ a: 0, b: 0 });

    // Once the disk is back, the same change goes through.
    const again = state(q.change({ ...q.latest, b: 1 }));
    await settle();
    gate.pending.shift()?.finish();
    await settle();
    expect(again).toEqual({ done: true, error: undefined });
    expect(gate.written).toEqual(['{"a":0,"b":1}']);
  });

  it("after a write that failed once the file was already replaced, puts the old text back before answering", async () => {
    // The folder flush can fail after the rename went through: the file then holds the refused change.
    let disk = '{"a":0}';
    let failing = true;
    const write = async (t: string): Promise<void> => {
      disk = t;
      if (failing) throw Object.assign(new Error("I/O error"), { code: "EIO" });
    };
    const q = new CommitQueue<Doc>({ a: 0 }, text, write, () => undefined);
    await expect(q.change({ a: 1 })).rejects.toMatchObject({ code: "EIO" });
    expect(disk).toBe('{"a":0}');
    expect(q.committed).toEqual({ a: 0 });

    // Had the queue believed the disk still held {"a":0}, this change back would have written nothing.
    failing = false;
    await q.change({ a: 0 });
    expect(disk).toBe('{"a":0}');
    await q.change({ a: 2 });
    expect(disk).toBe('{"a":2}');
  });
});
