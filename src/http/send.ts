/** How every answer leaves: one envelope, exact Content-Length, HEAD without a body. */

import * as http from "node:http";
import { CATALOGUE, errorEnvelope } from "./errors.ts";

/** The serialized error envelope of each catalogue code, made once. */
export const ERROR_BODIES: ReadonlyMap<number, Buffer> = new Map(CATALOGUE.map((e) => [e.code, errorEnvelope(e)]));

/** A request as our server builds it: when it arrived, the name of the pair its keys matched, why it was refused. */
export class Request extends http.IncomingMessage {
  readonly started = performance.now();
  pair = "-";
  /** Why the request was refused, in words, for its log line. */
  refusal: string | undefined = undefined;
}

const bodiesRead = new WeakSet<http.IncomingMessage>();

/** Records that the request's body was read whole, so its connection can be kept. */
export function markBodyRead(req: http.IncomingMessage): void {
  bodiesRead.add(req);
}

/**
 * Sends one envelope: exact Content-Length, no body for HEAD, and `Connection: close` when the
 * server is stopping or the request's body (`hasBody`) went unread (the rest of it would be parsed
 * as a request).
 */
export function sendEnvelope(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  hasBody: boolean,
  status: number,
  body: Buffer,
  extra: Readonly<Record<string, string>> | undefined,
  closing: boolean,
): void {
  const close = closing || (hasBody && !bodiesRead.has(req));
  // The usual answer (no extra header, connection kept) reuses the header list made for its body,
  // as the bare node:http server does: node reads the list and never changes it.
  const headers = extra === undefined && !close ? plainHeaders(body) : envelopeHeaders(body);
  if (extra !== undefined) for (const [k, v] of Object.entries(extra)) headers.push(k, v);
  if (close) headers.push("Connection", "close");
  res.writeHead(status, headers);
  res.end(req.method === "HEAD" ? undefined : body);
}

// nosniff: a browser never reads an answer as anything but JSON (no script or page made of it).
function envelopeHeaders(body: Buffer): string[] {
  return ["Content-Type", "application/json", "Content-Length", String(body.length), "Cache-Control", "no-store", "X-Content-Type-Options", "nosniff"];
}

/** The header list of each body sent (cached answers and error bodies live long; a PUT's answer is sent once). */
const headerLists = new WeakMap<Buffer, string[]>();

function plainHeaders(body: Buffer): string[] {
  let headers = headerLists.get(body);
  if (headers === undefined) {
    headers = Object.freeze(envelopeHeaders(body)) as string[];
    headerLists.set(body, headers);
  }
  return headers;
}

const MAX_LOGGED_PATH = 256;

/** The path of a request target for the log: never the query string (it may hold anything). */
export function loggedPath(url: string): string {
  const query = url.indexOf("?");
  let path = query === -1 ? url : url.slice(0, query);
  // An absolute-form target may carry "user:password@" before its host: never logged.
  if (!path.startsWith("/") && path.includes("@")) path = path.replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/).*@/, "$1***@");
  return path.length > MAX_LOGGED_PATH ? path.slice(0, MAX_LOGGED_PATH) + "..." : path;
}
