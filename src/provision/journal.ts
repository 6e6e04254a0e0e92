/**
 * The journal: one line per key change, on disk (fsync'd) before the change is sent, so that after
 * a crash at any instant the next run knows both keys a pair may have: the old one and the new one.
 */

import * as fsp from "node:fs/promises";
import { basename, dirname } from "node:path";
import { isValidKey } from "../state/schema.ts";
import { NODE_FS, syncFolder, writeFileDurably } from "../state/store.ts";
import type { Pair } from "./keys.ts";

/** A key change about to be sent: pair `endpoint` of `host` goes from old to new. */
export interface Intent {
  readonly host: string;
  readonly endpoint: string;
  readonly oldRd: string;
  readonly oldWr: string;
  readonly newRd: string;
  readonly newWr: string;
}

/** A journal the tool cannot read safely; it will not guess. */
export class JournalError extends Error {
  override name = "JournalError";
}

/** The old pair of an intent. */
export const oldPair = (i: Intent): Pair => ({ rd: i.oldRd, wr: i.oldWr });
/** The new pair of an intent. */
export const newPair = (i: Intent): Pair => ({ rd: i.newRd, wr: i.newWr });

function journalLine(i: Intent): string {
  return JSON.stringify({ host: i.host, endpoint: i.endpoint, oldRd: i.oldRd, oldWr: i.oldWr, newRd: i.newRd, newWr: i.newWr }) + "\n";
}

function isIntent(v: unknown): v is Intent {
  if (typeof v !== "object" || v === null) return false;
  const o = v as Record<string, unknown>;
  return (
    typeof o["host"] === "string" &&
    typeof o["endpoint"] === "string" &&
    isValidKey(o["oldRd"]) &&
    isValidKey(o["oldWr"]) &&
    isValidKey(o["newRd"]) &&
    isValidKey(o["newWr"])
  );
}

/** What a journal file holds: its complete lines, and how many bytes they take. */
export interface JournalContents {
  readonly intents: Intent[];
  /** Bytes up to the last complete line; anything after is a line torn by a crash. */
  readonly validBytes: number;
}

/**
 * Reads a journal. A last line without its newline was being written when the run died: its change
 * was never sent (the line is flushed before the request), so it is ignored. Any other bad line is
 * an error.
 */
export async function readJournal(path: string): Promise<JournalContents> {
  let text: string;
  try {
    text = await fsp.readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { intents: [], validBytes: 0 };
    throw error;
  }
  const end = text.lastIndexOf("\n") + 1;
  const intents: Intent[] = [];
  text
    .slice(0, end)
    .split("\n")
    .forEach((line, i) => {
      if (line === "") return;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        value = undefined;
      }
      if (!isIntent(value)) throw new JournalError(`${path}: line ${i + 1} is not a journal entry; refusing to guess which keys the devices have`);
      intents.push(value);
    });
  return { intents, validBytes: Buffer.byteLength(text.slice(0, end)) };
}

/** The journal open for appending. Appends are serialized; each is on disk when it resolves. */
export class Journal {
  private handle: fsp.FileHandle | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private validBytes: number;
  private readonly lines: Intent[];

  constructor(
    readonly path: string,
    contents: JournalContents,
  ) {
    this.validBytes = contents.validBytes;
    this.lines = [...contents.intents];
  }

  /** Every line: those read at the start and those appended since. */
  get intents(): readonly Intent[] {
    return this.lines;
  }

  /** Appends one line and flushes it to the disk. */
  append(intent: Intent): Promise<void> {
    const line = JSON.stringify({
      host: intent.host,
      endpoint: intent.endpoint,
      oldRd: intent.oldRd,
      oldWr: intent.oldWr,
      newRd: intent.newRd,
      newWr: intent.newWr,
    });
    return this.serialized(async () => {
      const handle = this.handle ?? (await this.openForAppend());
      await handle.write(line + "\n");
      await handle.sync();
    });
  }

  /** Replaces the journal with the intents still unresolved, or removes it when there are none. */
  rewrite(intents: readonly Intent[]): Promise<void> {
    return this.serialized(async () => {
      await this.handle?.close();
      this.handle = undefined;
      if (intents.length === 0) {
        try {
          await fsp.unlink(this.path);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
          throw error;
        }
        await syncFolder(NODE_FS, dirname(this.path));
        this.validBytes = 0;
        this.lines.length = 0;
        return;
      }
      const text = intents.map(journalLine).join("");
      await writeFileDurably(NODE_FS, dirname(this.path), basename(this.path), text);
      this.validBytes = Buffer.byteLength(text);
      this.lines.splice(0, this.lines.length, ...intents);
    });
  }

  /** Closes the file. */
  close(): Promise<void> {
    return this.serialized(async () => {
      await this.handle?.close();
      this.handle = undefined;
    });
  }

  private async openForAppend(): Promise<fsp.FileHandle> {
    const handle = await fsp.open(this.path, "a", 0o600);
    try {
      await handle.chmod(0o600);
      // Cut a line torn by a crash, so that the next line does not run into it.
      if ((await handle.stat()).size > this.validBytes) await handle.truncate(this.validBytes);
      await handle.sync();
      await syncFolder(NODE_FS, dirname(this.path));
    } catch (error) {
      await handle.close();
      throw error;
    }
    this.handle = handle;
    return handle;
  }

  private serialized<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work);
    this.queue = next.catch(() => undefined);
    return next;
  }
}
