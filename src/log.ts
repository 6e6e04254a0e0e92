/** Log lines: human-readable text by default, one JSON object per line for collectors. Never a key or a body. */

export type LogFormat = "text" | "json";
export type LogLevel = "info" | "warn" | "error";
export type LogFields = Readonly<Record<string, string | number | boolean | undefined>>;

/** Where the server reports what happened. */
export interface Logger {
  log(level: LogLevel, message: string, fields?: LogFields): void;
}

/** A logger writing lines to `write` (standard error by default). */
export function createLogger(format: LogFormat = "text", write: (line: string) => void = (l) => process.stderr.write(l + "\n")): Logger {
  return {
    log(level, message, fields = {}) {
      const time = new Date().toISOString();
      if (format === "json") {
        write(JSON.stringify({ time, level, msg: message, ...fields }));
        return;
      }
      let line = `${time} ${level.toUpperCase().padEnd(5)} ${message}`;
      for (const [k, v] of Object.entries(fields)) if (v !== undefined) line += ` ${k}=${formatValue(v)}`;
      write(line);
    },
  };
}

function formatValue(v: string | number | boolean): string {
  const s = String(v);
  return /^[^\s"=]*$/.test(s) && s !== "" ? s : JSON.stringify(s);
}

/** A logger that drops everything (library use and tests that do not look at the log). */
export const SILENT: Logger = { log: () => undefined };
