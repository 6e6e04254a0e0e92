/**
 * The driver program's life (docs/io-driver.md): started without a shell in its own process group,
 * its output read as lines with backpressure (at most LINES_PER_TURN per turn of the event loop),
 * its standard error logged within bounds, and restarted with back-off whenever it ends.
 */

import type { ChildProcess } from "node:child_process";
import { loadBuiltin } from "../common/builtins.ts";
import type { Logger } from "../common/log.ts";
import { LineSplitter, LINES_PER_TURN, MAX_LINE_BYTES, MAX_QUEUED_LINES } from "./protocol.ts";

// node:child_process is loaded when a driver is started, not at every start (`npm run bench`).
const loadChildProcess = (): typeof import("node:child_process") => loadBuiltin<typeof import("node:child_process")>("node:child_process");

/** When a driver that ended is started again. */
export interface Backoff {
  /** The wait after the first exit, doubled after each further one. */
  readonly initialMs: number;
  readonly maxMs: number;
  /** A run at least this long starts the doubling over. */
  readonly resetAfterMs: number;
}

export const DEFAULT_BACKOFF: Backoff = Object.freeze({ initialMs: 500, maxMs: 30_000, resetAfterMs: 60_000 });

/** What the bridge does with the driver. */
export interface DriverHandlers {
  /** A driver started: the place to send what it must get before anything else. */
  started(): void;
  /** One line of its output (already bounded; not yet checked). */
  line(line: string): void;
  /** A line over the limit was dropped. */
  tooLong(): void;
  /** The end of a turn's batch of lines. */
  turnEnd(): void;
  /** The driver is gone (exited, killed, or could not be started). */
  ended(): void;
}

export interface DriverProcessOptions {
  readonly argv: readonly string[];
  /** The environment of each start (APIKEYD_IO_POINTS is built afresh). */
  readonly env: () => NodeJS.ProcessEnv;
  readonly log: Logger;
  readonly backoff: Backoff;
  readonly handlers: DriverHandlers;
}

/** Standard error lines logged per second (a burst of STDERR_BURST first); longer lines are cut. */
const STDERR_PER_SECOND = 20;
const STDERR_BURST = 50;
const STDERR_LINE_CHARS = 200;
/** How long a stop waits for the driver to exit after its input closed, before SIGKILL. */
const STOP_GRACE_MS = 1_000;
/** After the exit, how long the last output may take to arrive (a grandchild may hold the pipe). */
const CLOSE_GRACE_MS = 200;

/** Supervises one driver program. */
export class DriverProcess {
  private child: ChildProcess | undefined;
  private startedAt = 0;
  private exits = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private queue: string[] = [];
  private draining = false;
  private readonly stderrLimit = new LogBudget(STDERR_PER_SECOND, STDERR_BURST);

  constructor(private readonly options: DriverProcessOptions) {}

  /** Whether a driver process is running now. */
  get running(): boolean {
    return this.child !== undefined;
  }

  /** The process id of the running driver (tests and the log). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): void {
    if (this.stopping || this.child !== undefined) return;
    const [program, ...args] = this.options.argv as [string, ...string[]];
    const { log, handlers } = this.options;
    let child: ChildProcess;
    try {
      child = loadChildProcess().spawn(program, args, { stdio: ["pipe", "pipe", "pipe"], env: this.options.env(), detached: true });
    } catch (error) {
      log.log("error", "I/O driver cannot be started", { program, detail: (error as NodeJS.ErrnoException).code ?? String(error) });
      this.scheduleRestart();
      return;
    }
    this.child = child;
    this.startedAt = performance.now();
    this.queue = [];
    const splitter = new LineSplitter((line) => this.enqueue(child, line), handlers.tooLong);
    const errSplitter = new LineSplitter((line) => this.logStderr(line), () => this.logStderr(`(a line over ${MAX_LINE_BYTES} bytes, dropped)`));
    child.stdout?.on("data", (chunk: Buffer) => splitter.push(chunk));
    child.stderr?.on("data", (chunk: Buffer) => errSplitter.push(chunk));
    child.stdin?.on("error", () => undefined); // EPIPE: the exit that follows says it all
    let ended = false;
    const end = (how: Record<string, string | number | undefined>): void => {
      if (ended) return;
      ended = true;
      killGroup(child);
      const finish = (): void => {
        clearTimeout(timer);
        if (this.child !== child) return;
        this.child = undefined;
        this.queue = [];
        splitter.reset();
        errSplitter.reset();
        const ranMs = performance.now() - this.startedAt;
        log.log(this.stopping ? "info" : "warn", "I/O driver ended", { ...how, ranMs: Math.round(ranMs) });
        if (ranMs >= this.options.backoff.resetAfterMs) this.exits = 0;
        handlers.ended();
        this.scheduleRestart();
      };
      // Lines still in the pipe (an acknowledgement written just before the exit) are taken in first.
      const timer = setTimeout(finish, CLOSE_GRACE_MS);
      if (child.stdout === null || child.stdout.readableEnded) finish();
      else child.stdout.once("end", () => setImmediate(() => this.drainAll(child, finish)));
    };
    child.on("error", (error: NodeJS.ErrnoException) => end({ program, detail: error.code ?? error.message }));
    child.on("exit", (code, signal) => end({ code: code ?? undefined, signal: signal ?? undefined }));
    child.on("spawn", () => {
      log.log("info", "I/O driver started", { program, pid: child.pid });
      handlers.started();
    });
  }

  /** Writes a line to the driver; false when none runs. */
  send(line: string): boolean {
    const stdin = this.child?.stdin;
    if (stdin === undefined || stdin === null || stdin.destroyed) return false;
    stdin.write(line);
    return true;
  }

  /** Kills a driver that hangs; it is restarted with back-off like one that exited. */
  kill(reason: string): void {
    const child = this.child;
    if (child === undefined) return;
    this.options.log.log("warn", "I/O driver killed", { reason, pid: child.pid });
    killGroup(child);
  }

  /** Stops for good: closes the driver's input, then kills it if it has not exited within a second. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const child = this.child;
    if (child === undefined) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => killGroup(child), STOP_GRACE_MS);
      child.once("exit", () => {
        clearTimeout(timer);
        resolve();
      });
      child.stdin?.end();
    });
  }

  private scheduleRestart(): void {
    if (this.stopping) return;
    const { initialMs, maxMs } = this.options.backoff;
    const delay = Math.min(maxMs, initialMs * 2 ** Math.min(this.exits, 30));
    this.exits++;
    this.options.log.log("info", "I/O driver restarts", { inMs: delay });
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      this.start();
    }, delay);
  }

  private enqueue(child: ChildProcess, line: string): void {
    if (this.child !== child) return;
    this.queue.push(line);
    if (this.queue.length >= MAX_QUEUED_LINES) child.stdout?.pause();
    if (!this.draining) {
      this.draining = true;
      setImmediate(() => this.drain(child));
    }
  }

  /** Takes in at most LINES_PER_TURN lines, then yields to the HTTP server until the next turn. */
  private drain(child: ChildProcess): void {
    this.draining = false;
    if (this.child !== child) return;
    const batch = this.queue.splice(0, LINES_PER_TURN);
    for (const line of batch) this.options.handlers.line(line);
    this.options.handlers.turnEnd();
    if (this.queue.length > 0) {
      this.draining = true;
      setImmediate(() => this.drain(child));
    } else if (child.stdout?.isPaused() === true) child.stdout.resume();
  }

  /** At the driver's end: what it wrote last, at once (bounded by the queue), then `then`. */
  private drainAll(child: ChildProcess, then: () => void): void {
    if (this.child === child) {
      const batch = this.queue.splice(0);
      for (const line of batch) this.options.handlers.line(line);
      if (batch.length > 0) this.options.handlers.turnEnd();
    }
    then();
  }

  private logStderr(line: string): void {
    const suppressed = this.stderrLimit.take();
    if (suppressed === undefined) return;
    const text = printable(line.length > STDERR_LINE_CHARS ? `${line.slice(0, STDERR_LINE_CHARS)}...` : line);
    this.options.log.log("info", "I/O driver says", { line: text, dropped: suppressed > 0 ? suppressed : undefined });
  }
}

/** Kills the driver's whole process group (it was started as its leader); nothing left, nothing done. */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }
}

/** Controls, DEL, C1 and bidi controls shown as '?': one driver line stays one plain log line. */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, "?");
}

/**
 * A token bucket for log lines: take() answers undefined when the line must be dropped, otherwise
 * how many were dropped since the last one logged.
 */
export class LogBudget {
  private tokens: number;
  private last = performance.now();
  private dropped = 0;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
  }

  take(): number | undefined {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.perSecond);
    this.last = now;
    if (this.tokens < 1) {
      this.dropped++;
      return undefined;
    }
    this.tokens--;
    const dropped = this.dropped;
    this.dropped = 0;
    return dropped;
  }
}
