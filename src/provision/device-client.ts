/**
 * Requests to one device over node:http, or node:https for a device written https://..., as any
 * vendor script would make them, with a time limit. Certificates are always verified, name included.
 */

import * as http from "node:http";
import * as https from "node:https";

/** Where a device listens, and how it is spoken to. */
export interface DeviceAddress {
  readonly scheme: "http" | "https";
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
  /** PEM certificates trusted for HTTPS devices instead of Node's default roots (--ca). */
  readonly ca?: readonly string[];
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
    const target = { host: device.hostname, port: device.port, method, path, headers, agent: false };
    // Node writes nothing into a TLS connection before the certificate and its name are checked, so
    // a key never reaches a device that fails them. rejectUnauthorized is spelled out so that not
    // even NODE_TLS_REJECT_UNAUTHORIZED=0 in the environment can turn the check off.
    const req =
      device.scheme === "https"
        ? https.request({ ...target, rejectUnauthorized: true, ...(options.ca === undefined ? {} : { ca: [...options.ca] }) })
        : http.request(target);
    const reason = (error: NodeJS.ErrnoException): DeviceError =>
      error instanceof DeviceError ? error : new DeviceError(device.scheme === "https" ? tlsReason(error, options.ca !== undefined) : networkReason(error, true));
    const timer = setTimeout(() => req.destroy(new DeviceError(`no answer within ${options.timeoutMs / 1000} s`)), options.timeoutMs);
    const settle = (fn: () => void): void => {
      clearTimeout(timer);
      fn();
    };
    req.on("error", (error: NodeJS.ErrnoException) => settle(() => reject(reason(error))));
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_ANSWER_BYTES) req.destroy(new DeviceError("answered more than 1 MiB; not an MKC device?"));
        else chunks.push(chunk);
      });
      res.on("error", (error: NodeJS.ErrnoException) => settle(() => reject(reason(error))));
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
  // apikeyd's own answer to plain HTTP on its HTTPS port (older devices reset the connection instead).
  if (status === 400 && text.startsWith("This port speaks HTTPS")) throw new DeviceError(SPEAKS_HTTPS);
  if (typeof meta?.error !== "number") throw new DeviceError(`answered HTTP ${status} without the MKC envelope; not an apikeyd/MKC device?`);
  const retryAfter = Number(res.headers["retry-after"]);
  return {
    status,
    error: meta.error,
    data: (envelope as { data?: unknown }).data,
    retryAfterS: Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter : undefined,
  };
}

const SPEAKS_HTTPS = "the device serves HTTPS on that port: write it https://HOST:PORT in the inventory";

/** `plain`: the request went over plain HTTP, so a reset may be a TLS port. */
function networkReason(error: NodeJS.ErrnoException, plain: boolean): string {
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
      // A TLS server drops a plain HTTP request without a word.
      return plain ? "connection reset by the device (if it serves HTTPS, write it https://HOST:PORT in the inventory)" : "connection reset by the device";
    default:
      return error.code ?? error.message;
  }
}

/**
 * Puts a failed HTTPS request into words: the certificate checks by their OpenSSL/Node code, with
 * what to do about them; anything else as networkReason says it.
 */
function tlsReason(error: NodeJS.ErrnoException, withCa: boolean): string {
  const code = error.code ?? "";
  const words = ((): string | undefined => {
    switch (code) {
      case "DEPTH_ZERO_SELF_SIGNED_CERT":
        return `its certificate is self-signed and not trusted; ${withCa ? "it is not in the --ca file" : "give the tool that certificate with --ca FILE"}`;
      case "SELF_SIGNED_CERT_IN_CHAIN":
      case "UNABLE_TO_VERIFY_LEAF_SIGNATURE":
      case "UNABLE_TO_GET_ISSUER_CERT":
      case "UNABLE_TO_GET_ISSUER_CERT_LOCALLY":
        return `its certificate is signed by a CA that is not trusted; ${withCa ? "that CA is not in the --ca file" : "give the tool the CA's certificate with --ca FILE"}`;
      case "CERT_HAS_EXPIRED":
        return "its certificate has expired";
      case "CERT_NOT_YET_VALID":
        return "its certificate is not valid yet (check the clocks of this machine and the device)";
      case "ERR_TLS_CERT_ALTNAME_INVALID": {
        // Node's reason names the address and the certificate's names ("IP: 10.0.0.5 is not in the cert's list: 10.0.0.4").
        const detail = (error as { reason?: unknown }).reason;
        return `its certificate is not for this address${typeof detail === "string" ? ` (${detail})` : ""}; the certificate needs a subjectAltName with the address as written in the inventory`;
      }
      case "EPROTO":
      case "ERR_SSL_WRONG_VERSION_NUMBER": {
        // OpenSSL's message carries its source file; keep only the reason ("wrong version number").
        const detail = /routines:[^:]*:([^:]+)/.exec(error.message)?.[1] ?? "handshake failed";
        return /wrong version number/.test(error.message)
          ? `the device did not answer in TLS (${detail}); if it serves plain HTTP, write it without https://`
          : `the TLS handshake failed (${detail})`;
      }
      default:
        // The other verification failures (CERT_REVOKED, INVALID_CA, ...), by OpenSSL's name.
        return /CERT|ISSUER|_CA$|CHAIN|PURPOSE/.test(code) ? "its certificate was refused" : undefined;
    }
  })();
  return words === undefined ? networkReason(error, false) : `TLS: ${words} (${code})`;
}
