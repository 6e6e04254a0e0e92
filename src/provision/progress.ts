/**
 * What the tool shows while it works: one live status line on a terminal, plain lines otherwise.
 * Hosts and messages may hold what a device sent (pair names, certificate names): they are made
 * printable here, the one way progress reaches the terminal.
 */

import { printable } from "../common/printable.ts";

/** Where progress goes (stderr). */
export interface ProgressStream {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

/** Progress of a run over `total` devices. Messages never hold keys, only fingerprints. */
export class Progress {
  private readonly running = new Map<string, string>();
  private finished = 0;
  private failed = 0;
  private readonly tty: boolean;

  constructor(
    private readonly out: ProgressStream,
    private readonly total: number,
  ) {
    this.tty = out.isTTY === true;
  }

  /** A step on a device. */
  event(rawHost: string, rawMessage: string): void {
    const host = printable(rawHost);
    const message = printable(rawMessage);
    if (this.tty) {
      this.running.set(host, message);
      this.redraw();
    } else {
      this.out.write(`${host}: ${message}\n`);
    }
  }

  /** A device is done with; `line` says how it ended, and stays on screen. */
  finish(rawHost: string, rawLine: string, failed: boolean): void {
    const host = printable(rawHost);
    const line = printable(rawLine);
    this.running.delete(host);
    this.finished += 1;
    if (failed) this.failed += 1;
    if (this.tty) {
      this.out.write(`\r\x1b[K${host}: ${line}\n`);
      this.redraw();
    } else {
      this.out.write(`${host}: ${line}\n`);
    }
  }

  /** Clears the status line. */
  close(): void {
    if (this.tty) this.out.write("\r\x1b[K");
  }

  private redraw(): void {
    let line = `[${this.finished}/${this.total} finished, ${this.failed} failed]`;
    const first = this.running.entries().next().value;
    if (first !== undefined) {
      const more = this.running.size > 1 ? ` (+${this.running.size - 1} more)` : "";
      line += ` ${first[0]}${more}: ${first[1]}`;
    }
    const width = (this.out.columns !== undefined && this.out.columns > 0 ? this.out.columns : 80) - 1;
    if (line.length > width) line = line.slice(0, Math.max(width - 1, 0)) + "…";
    this.out.write(`\r\x1b[K${line}`);
  }
}
