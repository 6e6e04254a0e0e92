/** Log lines: human-readable text by default, one JSON object per line for collectors. Never a key or a body. */

export type LogFormat = "text" | "json";
export type LogLevel = "info" | "warn" | "error";
export type LogFields = Readonly<Record<string, string | number | boolean | undefined>>;

/** Where the server reports what happened. */
export interface Logger {
  log(level: LogLevel, message: string, fields?: LogFields): void;
  /**
   * One line per answered request (optional: library users and tests may leave it out). Positional
   * arguments, so that the hot path builds no object: `pair` is the key pair that let it in, or "-";
   * `reason` is why a refused request was refused, in words (an error's detail), never a value sent.
   */
  request?(client: string, method: string, path: string, status: number, ms: number, pair: string, reason?: string): void;
}

/** What a logger writes besides events. */
export interface LoggerOptions {
  /**
   * One line per answered request (`--log-requests`). Off by default: on an appliance, a line per
   * request is a write per request to the journal (an SD card), and it costs the read path.
   */
  readonly requests?: boolean;
}

/**
 * A logger writing lines to `write` (standard error by default, see stderrLines). Events (start, stop,
 * refused keys, key changes, faults) are always written; request lines only with `requests`.
 */
export function createLogger(format: LogFormat = "text", write: LineWriter = stderrLines(), options: LoggerOptions = {}): Logger {
  const log: Logger["log"] = (level, message, fields = {}) => {
    const time = timestamp();
    if (format === "json") {
      write(JSON.stringify({ time, level, msg: message, ...fields }), true);
      return;
    }
    let line = `${time} ${level.toUpperCase().padEnd(5)} ${message}`;
    for (const [k, v] of Object.entries(fields)) if (v !== undefined) line += ` ${k}=${formatValue(v)}`;
    write(line, true);
  };
  if (options.requests !== true) return { log };
  return {
    log,
    request(client, method, path, status, ms, pair, reason) {
      const time = timestamp();
      const duration = ms.toFixed(3);
      if (format === "json") {
        // Method, address and pair name cannot hold a quote (HTTP tokens, node's addresses, endpoint file names).
        const why = reason === undefined ? "" : `,"reason":${JSON.stringify(reason)}`;
        write(`{"time":"${time}","level":"info","msg":"request","client":"${client}","method":"${method}","path":${JSON.stringify(path)},"status":${status},"ms":${duration},"pair":"${pair}"${why}}`);
        return;
      }
      const why = reason === undefined ? "" : ` reason=${JSON.stringify(reason)}`;
      write(`${time} REQ   ${client} ${method} ${PLAIN_PATH.test(path) ? path : JSON.stringify(path)} ${status} ${duration}ms ${pair}${why}`);
    },
  };
}

let lastMs = 0;
let lastTime = "";

/** The ISO time of now, formatted once per millisecond however many lines share it. */
function timestamp(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    lastTime = new Date(ms).toISOString();
  }
  return lastTime;
}

/** Takes one log line; `soon` asks for it to be written within this turn of the event loop. */
export type LineWriter = (line: string, soon?: boolean) => void;

let stderrWriter: LineWriter | undefined;

/**
 * Lines to standard error. Request lines are gathered and written at most every LOG_FLUSH_MS (or at
 * 64 KiB); other lines within the turn of the event loop that made them. A busy
 * server makes one write per batch of requests rather than one per line. Writing once per turn of
 * the event loop still cost about 1.2 µs per request in the profile (a write per 2-3 requests);
 * this costs about 0.2. What is pending is written at exit (process.exit included); only a SIGKILL
 * can lose the last LOG_FLUSH_MS of lines.
 */
export function stderrLines(): LineWriter {
  if (stderrWriter !== undefined) return stderrWriter;
  let pending = "";
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    if (pending === "") return;
    const text = pending;
    pending = "";
    try {
      process.stderr.write(text);
    } catch {
      // Nowhere left to report it.
    }
  };
  process.on("exit", flush);
  let soonScheduled = false;
  const flushSoon = (): void => {
    soonScheduled = false;
    flush();
  };
  stderrWriter = (line, soon = false) => {
    pending += line + "\n";
    if (pending.length >= MAX_PENDING_LOG_CHARS) flush();
    else if (soon) {
      // Events (listening, warnings, audit lines) are not held back: a supervisor or a test may wait for them.
      if (!soonScheduled) {
        soonScheduled = true;
        setImmediate(flushSoon);
      }
    } else if (!scheduled) {
      scheduled = true;
      setTimeout(flush, LOG_FLUSH_MS).unref();
    }
  };
  return stderrWriter;
}

const MAX_PENDING_LOG_CHARS = 64 * 1024;
const LOG_FLUSH_MS = 50;

// A path with a space, a quote or a control character is quoted, so that one line stays one line.
const PLAIN_PATH = /^[\x21\x23-\x7e]+$/;

function formatValue(v: string | number | boolean): string {
  const s = String(v);
  return /^[^\s"=]*$/.test(s) && s !== "" ? s : JSON.stringify(s);
}

/** A logger that drops everything (library use and tests that do not look at the log). */
export const SILENT: Logger = { log: () => undefined };
