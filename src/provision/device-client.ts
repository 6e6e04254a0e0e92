/** Requests to one device over plain node:http, as any vendor script would make them, with a time limit. */

import * as http from "node:http";

/** Where a device listens. */
export interface DeviceAddress {
  readonly hostname: string;
  readonly port: number;
}

/** What a device answered: the HTTP status and the MKC envelope. */
export interface DeviceAnswer {
  readonly status: number;
  /** meta.error of the envelope. */
  readonly error: number;
  readonly data: unknown;
  /** Retry-After in seconds, on a 429. */
  readonly retryAfterS: number | undefined;
}

/** The request options: keys (an empty or missing key sends no header) and a form body. */
export interface RequestOptions {
  readonly rd?: string;
  readonly wr?: string;
  /** Sent as application/x-www-form-urlencoded; an empty object sends an empty body. */
  readonly form?: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
}

/** The device could not be reached, or answered something that is not the MKC dialect. */
export class DeviceError extends Error {
  override name = "DeviceError";
}

const MAX_ANSWER_BYTES = 1 << 20;

/** One request on a connection of its own (no keep-alive: every check is a fresh request). */
export function deviceRequest(device: DeviceAddress, method: "GET" | "PUT", path: string, options: RequestOptions): Promise<DeviceAnswer> {
  const headers: Record<string, string> = {};
  if (options.rd !== undefined && options.rd !== "") headers["ApiRdKey"] = options.rd;
  if (options.wr !== undefined && options.wr !== "") headers["ApiWrKey"] = options.wr;
  let body: Buffer | undefined;
  if (options.form !== undefined) {
    // URLSearchParams percent-encodes everything a form could misread ('+' would be a space).
    body = Buffer.from(new URLSearchParams(options.form as Record<string, string>).toString());
    headers["Content-Type"] = "application/x-www-form-urlencoded";
    headers["Content-Length"] = String(body.length);
  }
  return new Promise<DeviceAnswer>((resolve, reject) => {
    const req = http.request({ host: device.hostname, port: device.port, method, path, headers, agent: false });
    const timer = setTimeout(() => req.destroy(new DeviceError(`no answer within ${options.timeoutMs / 1000} s`)), options.timeoutMs);
    const settle = (fn: () => void): void => {
      clearTimeout(timer);
      fn();
    };
    req.on("error", (error: NodeJS.ErrnoException) => settle(() => reject(error instanceof DeviceError ? error : new DeviceError(networkReason(error)))));
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_ANSWER_BYTES) req.destroy(new DeviceError("answered more than 1 MiB; not an MKC device?"));
        else chunks.push(chunk);
      });
      res.on("error", (error: NodeJS.ErrnoException) => settle(() => reject(error instanceof DeviceError ? error : new DeviceError(networkReason(error)))));
      res.on("end", () =>
        settle(() => {
          try {
            resolve(parseAnswer(res, Buffer.concat(chunks).toString("utf8")));
          } catch (error) {
            reject(error);
          }
        }),
      );
    });
    req.end(body);
  });
}

function parseAnswer(res: http.IncomingMessage, text: string): DeviceAnswer {
  const status = res.statusCode ?? 0;
  let envelope: unknown;
  try {
    envelope = JSON.parse(text);
  } catch {
    envelope = undefined;
  }
  const meta = (envelope as { meta?: { error?: unknown } } | undefined)?.meta;
  if (typeof meta?.error !== "number") throw new DeviceError(`answered HTTP ${status} without the MKC envelope; not an apikeyd/MKC device?`);
  const retryAfter = Number(res.headers["retry-after"]);
  return {
    status,
    error: meta.error,
    data: (envelope as { data?: unknown }).data,
    retryAfterS: Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter : undefined,
  };
}

function networkReason(error: NodeJS.ErrnoException): string {
  switch (error.code) {
    case "ECONNREFUSED":
      return "connection refused (nothing listens on that port)";
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return "host name not found";
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return "host unreachable";
    case "ETIMEDOUT":
      return "connection timed out";
    case "ECONNRESET":
    case "EPIPE":
      return "connection reset by the device";
    default:
      return error.code ?? error.message;
  }
}
