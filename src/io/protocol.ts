/**
 * The I/O driver protocol (docs/io-driver.md): JSON lines over the driver's standard input and
 * output. This file knows the messages, their limits and their checks; nothing here trusts a line.
 */

import { StringDecoder } from "node:string_decoder";

/** Longest line either side sends, in bytes, without its newline; a longer driver line is dropped whole. */
export const MAX_LINE_BYTES = 4096;
/** Driver lines taken in per turn of the event loop; the rest wait (and the pipe pushes back). */
export const LINES_PER_TURN = 256;
/** Lines held read but not yet taken in before reading the driver's output pauses. */
export const MAX_QUEUED_LINES = 4 * LINES_PER_TURN;

/** `error` values of a point (docs/io-driver.md#point-errors); 0 is no fault, 1-999 are the driver's. */
export const POINT_ERROR = Object.freeze({
  NONE: 0,
  /** The largest code a driver may report; larger ones are apikeyd's own. */
  DRIVER_MAX: 999,
  /** No driver runs (not started yet, exited, waiting to be restarted). */
  NO_DRIVER: 1000,
  /** The driver runs but has not reported this input, or acknowledged this output's value, yet. */
  NO_REPORT: 1001,
  /** The driver refused this output's value when it was sent at its start. */
  REFUSED: 1002,
});

/** What a point is, as the driver is told in APIKEYD_IO_POINTS. */
export interface Point {
  readonly entry: number;
  readonly name: string;
  readonly pin: string;
  readonly output: boolean;
  readonly digital: boolean;
}

/** A driver's report of an input's value and/or a point's error. */
export interface Report {
  readonly kind: "report";
  readonly entry: number;
  /** Absent: the value is unchanged. */
  readonly pin?: number | boolean;
  readonly error: number;
}

/** A driver's answer to an output change. */
export interface Ack {
  readonly kind: "ack";
  readonly id: number;
  readonly ok: boolean;
}

/** A line that is not protocol, and why (for the log; never the line itself). */
export interface Invalid {
  readonly kind: "invalid";
  readonly reason: string;
}

export type DriverMessage = Report | Ack | Invalid;

const invalid = (reason: string): Invalid => ({ kind: "invalid", reason });

/** Checks one driver line against the points of the device. */
export function parseDriverLine(line: string, points: readonly Point[]): DriverMessage {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return invalid("not JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return invalid("not a JSON object");
  const m = value as Record<string, unknown>;
  if (m["id"] !== undefined) {
    if (!isIndex(m["id"]) || m["id"] < 1) return invalid("id must be a positive integer");
    if (typeof m["ok"] !== "boolean") return invalid("ok must be true or false");
    if (m["entry"] !== undefined) return invalid("a line is an acknowledgement (id) or a report (entry), not both");
    return { kind: "ack", id: m["id"], ok: m["ok"] };
  }
  const entry = m["entry"];
  if (entry === undefined) return invalid("neither id nor entry");
  if (!isIndex(entry)) return invalid("entry must be a non-negative integer");
  const point = points[entry];
  if (point === undefined) return invalid("no such entry");
  const pin = m["pin"];
  const error = m["error"];
  if (pin === undefined && error === undefined) return invalid("a report needs pin or error");
  if (error !== undefined && !(isIndex(error) && error <= POINT_ERROR.DRIVER_MAX)) return invalid(`error must be an integer from 0 to ${POINT_ERROR.DRIVER_MAX}`);
  if (pin !== undefined) {
    if (point.output) return invalid("an output's value is set through the API, never reported");
    if (point.digital ? typeof pin !== "boolean" : typeof pin !== "number" || !Number.isFinite(pin)) {
      return invalid(point.digital ? "pin of a digital point must be true or false" : "pin of an analog point must be a number");
    }
  }
  const report: Report = pin === undefined ? { kind: "report", entry, error: error as number } : { kind: "report", entry, pin: pin as number | boolean, error: (error as number | undefined) ?? 0 };
  return report;
}

function isIndex(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** The line that asks the driver to set an output. */
export function changeLine(id: number, entry: number, pin: number | boolean): string {
  return `${JSON.stringify({ id, entry, pin })}\n`;
}

/**
 * Cuts a byte stream into lines: UTF-8 decoded across chunks, `\n` ends a line (a `\r` before it is
 * dropped), a line over MAX_LINE_BYTES is dropped whole (counted as too long), and a last line
 * without its newline is never taken (a half line at exit is no message).
 */
export class LineSplitter {
  private readonly decoder = new StringDecoder("utf8");
  private partial = "";
  private partialBytes = 0;
  /** Discarding the rest of a line that grew too long. */
  private skipping = false;

  constructor(
    private readonly onLine: (line: string) => void,
    private readonly onTooLong: () => void,
  ) {}

  push(chunk: Buffer): void {
    const text = this.decoder.write(chunk);
    let start = 0;
    for (;;) {
      const nl = text.indexOf("\n", start);
      const piece = nl === -1 ? text.slice(start) : text.slice(start, nl);
      if (!this.skipping) {
        this.partial += piece;
        this.partialBytes += Buffer.byteLength(piece);
        if (this.partialBytes > MAX_LINE_BYTES + 1) {
          this.skipping = true;
          this.partial = "";
          this.partialBytes = 0;
          this.onTooLong();
        }
      }
      if (nl === -1) return;
      if (!this.skipping) {
        const line = this.partial.endsWith("\r") ? this.partial.slice(0, -1) : this.partial;
        if (Buffer.byteLength(line) > MAX_LINE_BYTES) this.onTooLong();
        else if (line.trim() !== "") this.onLine(line);
      }
      this.skipping = false;
      this.partial = "";
      this.partialBytes = 0;
      start = nl + 1;
    }
  }

  /** Forgets a half line (the driver is gone). */
  reset(): void {
    this.partial = "";
    this.partialBytes = 0;
    this.skipping = false;
    this.decoder.end();
  }
}

/**
 * Splits `--io-driver`'s text into the program and its arguments, without a shell: words are
 * separated by blanks; '...' keeps everything literally; "..." keeps blanks, and a backslash in it
 * escapes only `"` and `\`; outside quotes a backslash escapes the next character. Throws on an
 * unterminated quote or an empty command.
 */
export function splitCommand(text: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (c === " " || c === "\t" || c === "\n") {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end === -1) throw new Error("unterminated ' quote");
      word += text.slice(i + 1, end);
      inWord = true;
      i = end;
    } else if (c === '"') {
      inWord = true;
      for (i++; ; i++) {
        if (i >= text.length) throw new Error('unterminated " quote');
        const d = text[i] as string;
        if (d === '"') break;
        if (d === "\\" && (text[i + 1] === '"' || text[i + 1] === "\\")) word += text[++i];
        else word += d;
      }
    } else if (c === "\\") {
      if (i + 1 >= text.length) throw new Error("a backslash at the end");
      word += text[++i];
      inWord = true;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  if (words.length === 0) throw new Error("no program named");
  return words;
}
