/**
 * The request pipeline, read top to bottom: find the endpoint, check the method, the throttle and
 * the keys, then look up the path, then read or write. Authorization comes before any lookup.
 */

import * as http from "node:http";
import type { Socket } from "node:net";
import { keyMatches, DUPLICATED, fingerprint, newFingerprintSecret, presentedKeys } from "../access/keys.ts";
import { bodyFormat, parseBody, readBody } from "./body.ts";
import { APIKEYS_ENDPOINT, type Device, type Endpoint } from "../state/device.ts";
import { decodeSegments, deepFreeze, select } from "../state/documents.ts";
import { ApiError, CATALOGUE, ERRORS, errorEnvelope, okEnvelope, type CatalogueEntry } from "./errors.ts";
import { SILENT, type Logger } from "../common/log.ts";
import { DEFAULT_THROTTLE, Throttle, type ThrottleOptions } from "../access/throttle.ts";
import { httpsModule } from "./tls.ts";
import { applyWrite } from "../state/write-rules.ts";
import { factoryKeysOf, WEAK_KEY_HEADER, weakKeyHeader, weakKeyWarnings, type WeakKeyWarning } from "../access/weak-keys.ts";

/** Limits and collaborators of a server; every field has an appliance-sized default. */
export interface ServerOptions {
  readonly log?: Logger;
  readonly throttle?: ThrottleOptions;
  /** PUT bodies above this answer 413. */
  readonly maxBodyBytes?: number;
  /** Request targets above this answer 431, like oversized headers. */
  readonly maxUrlBytes?: number;
  /** Request line plus headers above this answer 431 (node's parser enforces it). */
  readonly maxHeaderBytes?: number;
  readonly headersTimeoutMs?: number;
  readonly requestTimeoutMs?: number;
  readonly keepAliveTimeoutMs?: number;
  readonly maxConnections?: number;
  /** When set, requests whose Host header is not listed are refused (DNS-rebinding defence). */
  readonly allowedHosts?: readonly string[];
  /** Clock for the `time` stamps of writes, in milliseconds. */
  readonly now?: () => number;
  /** When set, the server speaks HTTPS (node:https) with this certificate and key (PEM); same API. */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /** Key of the fingerprints in key-change log lines (loadFingerprintSecret); without it, one for this server only. */
  readonly fingerprintSecret?: Buffer;
}

export const DEFAULT_LIMITS = Object.freeze({
  maxBodyBytes: 4096,
  maxUrlBytes: 1024,
  maxHeaderBytes: 8192,
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 256,
});

const PREFIX = "/api/v1/";
const ALLOW_ALL = "GET, HEAD, PUT";
const ALLOW_READ_ONLY = "GET, HEAD";
/** Cached answers per endpoint; the set of paths a client can ask for is open-ended. */
const MAX_CACHED_ANSWERS = 128;
const ERROR_BODIES = new Map<number, Buffer>(CATALOGUE.map((e) => [e.code, errorEnvelope(e)]));

const closingServers = new WeakSet<http.Server>();

/** Builds the API server for a loaded device. It is not listening yet. */
export function createServer(device: Device, options: ServerOptions = {}): http.Server {
  const log = options.log ?? SILENT;
  const limits = { ...DEFAULT_LIMITS, ...definedOnly(options) };
  const throttle = new Throttle(options.throttle ?? DEFAULT_THROTTLE);
  const fingerprintSecret = options.fingerprintSecret ?? newFingerprintSecret();
  const factoryKeys = factoryKeysOf(device.factory.get(APIKEYS_ENDPOINT));
  const now = options.now ?? Date.now;
  const allowedHosts = options.allowedHosts === undefined ? undefined : new Set(options.allowedHosts.map((h) => h.toLowerCase()));

  const httpOptions: http.ServerOptions = {
    // Our request class carries the arrival time and the pair that let it in, for the log line.
    IncomingMessage: Request,
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: 1_000,
    // Node 20 answers a missing Host with its own plain 400; we answer it with the envelope (handle()).
    requireHostHeader: false,
  };
  const server =
    options.tls === undefined
      ? http.createServer(httpOptions)
      : // https.Server is an http.Server over TLS; a handshake gets as long as a request's headers.
        (httpsModule().createServer({ ...httpOptions, cert: options.tls.cert, key: options.tls.key, handshakeTimeout: limits.headersTimeoutMs }) as http.Server);
  capConnections(server, limits.maxConnections);
  cutStalledReaders(server, limits.requestTimeoutMs);

  /** Sends one envelope: exact Content-Length, no body for HEAD, closing when the body went unread. */
  function send(req: http.IncomingMessage, res: http.ServerResponse, status: number, body: Buffer, extra?: Readonly<Record<string, string>>): void {
    const headers: string[] = ["Content-Type", "application/json", "Content-Length", String(body.length), "Cache-Control", "no-store"];
    if (extra !== undefined) for (const [k, v] of Object.entries(extra)) headers.push(k, v);
    if (closingServers.has(server) || (hasBody(req) && !bodyConsumed.has(req))) headers.push("Connection", "close");
    res.writeHead(status, headers);
    res.end(req.method === "HEAD" ? undefined : body);
    if (log.request !== undefined) {
      const r = req as Request;
      log.request(req.socket.remoteAddress ?? "-", req.method ?? "-", loggedPath(req.url ?? ""), status, performance.now() - r.started, r.pair);
    }
  }

  function fail(req: http.IncomingMessage, res: http.ServerResponse, error: unknown): void {
    let entry: CatalogueEntry = ERRORS.INTERNAL;
    let extra: Readonly<Record<string, string>> | undefined;
    if (error instanceof ApiError) {
      entry = error.entry;
      extra = error.extraHeaders;
    } else {
      log.log("error", "internal error", { method: req.method, detail: error instanceof Error ? error.stack ?? error.message : String(error) });
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    send(req, res, entry.status, ERROR_BODIES.get(entry.code) as Buffer, extra);
  }

  /** Checks the throttle and the keys the request needs (docs/api.md §3); throws 12, 9, 3 or 4. */
  function authorize(req: http.IncomingMessage, endpoint: Endpoint, isWrite: boolean): void {
    if (endpoint.readOnly) return;
    const pair = device.keyring.get(endpoint.name);
    if (pair === undefined) throw new ApiError(ERRORS.READ_DENIED); // never open an endpoint for want of a pair
    const needRead = pair.rd !== "";
    const needWrite = isWrite && pair.wr !== "";
    if (!needRead && !needWrite) return;
    const address = req.socket.remoteAddress ?? "";
    const waitMs = throttle.blockedFor(address);
    if (waitMs > 0) throw new ApiError(ERRORS.TOO_MANY_ATTEMPTS, { "Retry-After": String(Math.ceil(waitMs / 1000)) });
    const keys = presentedKeys(req.rawHeaders);
    if (needRead) checkKey(keys.rd, pair.rdSlot, ERRORS.READ_DENIED, "ApiRdKey", address, endpoint.name);
    if (needWrite) checkKey(keys.wr, pair.wrSlot, ERRORS.WRITE_DENIED, "ApiWrKey", address, endpoint.name);
    (req as Request).pair = endpoint.name;
  }

  function checkKey(presented: string | undefined | typeof DUPLICATED, stored: Buffer, denied: CatalogueEntry, header: string, address: string, endpoint: string): void {
    if (presented === DUPLICATED) throw new ApiError(ERRORS.BAD_REQUEST);
    if (presented === undefined) throw new ApiError(denied);
    if (keyMatches(stored, presented)) return;
    throttle.recordFailure(address);
    log.log("warn", "refused key", { event: "key-refused", client: address, endpoint, header });
    throw new ApiError(denied);
  }

  function read(req: http.IncomingMessage, res: http.ServerResponse, endpoint: Endpoint, path: string, subPath: string): void {
    let body = endpoint.answers.get(path);
    if (body === undefined) {
      const segments = decodeSegments(subPath);
      if (segments === null) throw new ApiError(ERRORS.BAD_REQUEST);
      const selection = select(endpoint.docs.committed, segments);
      if (selection === undefined) throw new ApiError(ERRORS.PATH_NOT_FOUND);
      body = okEnvelope(JSON.stringify(selection.value));
      if (endpoint.answers.size >= MAX_CACHED_ANSWERS) endpoint.answers.clear();
      endpoint.answers.set(path, body);
    }
    send(req, res, 200, body);
  }

  async function write(req: http.IncomingMessage, res: http.ServerResponse, endpoint: Endpoint, subPath: string): Promise<void> {
    if (req.headers.expect?.toLowerCase() === "100-continue") res.writeContinue();
    const raw = await readBody(req, limits.maxBodyBytes);
    bodyConsumed.add(req);
    const fields = parseBody(bodyFormat(req.headers["content-type"]), raw);
    const segments = decodeSegments(subPath);
    if (segments === null) throw new ApiError(ERRORS.BAD_REQUEST);
    const next = applyWrite(endpoint.docs.latest, segments, fields, device.schema, Math.floor(now() / 1000));
    try {
      await endpoint.docs.change(deepFreeze(next));
    } catch (error) {
      log.log("error", "change not made durable", { endpoint: endpoint.name, detail: (error as NodeJS.ErrnoException).code ?? String(error) });
      throw new ApiError(ERRORS.STORAGE);
    }
    const warnings = endpoint.name === APIKEYS_ENDPOINT ? auditKeyChange(req, segments, fields.values) : [];
    const selection = select(endpoint.docs.committed, segments);
    send(req, res, 200, okEnvelope(JSON.stringify(selection?.value ?? null)), warnings.length > 0 ? { [WEAK_KEY_HEADER]: weakKeyHeader(warnings) } : undefined);
  }

  /** Logs each key the PUT set, and warns of weak ones (returned for the answer's header). */
  function auditKeyChange(req: http.IncomingMessage, segments: readonly string[], values: ReadonlyMap<string, unknown>): WeakKeyWarning[] {
    const warnings: WeakKeyWarning[] = [];
    const pair = select(device.endpoints.get(APIKEYS_ENDPOINT)?.docs.committed, segments.slice(0, 2))?.value as Record<string, unknown> | undefined;
    for (const side of ["rd", "wr"] as const) {
      const key = pair?.[side];
      if (!values.has(side) || typeof key !== "string") continue;
      log.log("info", "key changed", { event: "key-changed", client: req.socket.remoteAddress, pair: String(pair?.["name"]), side, fingerprint: fingerprint(key, fingerprintSecret) });
      warnings.push(...weakKeyWarnings(String(pair?.["name"]), side, key, factoryKeys));
    }
    for (const w of warnings) log.log("warn", w.message, { event: "weak-key", pair: w.pair, side: w.side, reason: w.reason });
    return warnings;
  }

  function handle(req: http.IncomingMessage, res: http.ServerResponse): void | Promise<void> {
    const url = req.url ?? "";
    if (url.length > limits.maxUrlBytes) throw new ApiError(ERRORS.HEADERS_TOO_LARGE);
    // HTTP/1.1 requires one Host (RFC 9112 §3.2; node keeps the first of several); with an
    // allow-list, only the listed values pass.
    const host = req.headers.host;
    if (allowedHosts !== undefined ? !allowedHosts.has(host?.toLowerCase() ?? "") : host === undefined && req.httpVersion === "1.1") {
      throw new ApiError(ERRORS.BAD_REQUEST);
    }
    if (host !== undefined && hostLines(req.rawHeaders) > 1) throw new ApiError(ERRORS.BAD_REQUEST);
    const query = url.indexOf("?");
    const path = query === -1 ? url : url.slice(0, query);
    if (!path.startsWith(PREFIX)) throw new ApiError(ERRORS.ENDPOINT_NOT_FOUND);
    const rest = path.slice(PREFIX.length);
    const slash = rest.indexOf("/");
    const endpointName = decodeName(slash === -1 ? rest : rest.slice(0, slash));
    const endpoint = endpointName === undefined ? undefined : device.endpoints.get(endpointName);
    if (endpoint === undefined) throw new ApiError(ERRORS.ENDPOINT_NOT_FOUND);

    const method = req.method;
    const isRead = method === "GET" || method === "HEAD";
    if (!isRead && (method !== "PUT" || endpoint.readOnly)) {
      throw new ApiError(ERRORS.METHOD_NOT_ALLOWED, { Allow: endpoint.readOnly ? ALLOW_READ_ONLY : ALLOW_ALL });
    }
    authorize(req, endpoint, !isRead);

    let subPath = slash === -1 ? "" : rest.slice(slash + 1);
    // One trailing slash is forgiven ("name/"); "//" keeps an empty segment, a malformed path.
    if (subPath.length > 1 && subPath.endsWith("/")) subPath = subPath.slice(0, -1);
    if (isRead) return read(req, res, endpoint, path, subPath);
    return write(req, res, endpoint, subPath);
  }

  function dispatch(req: http.IncomingMessage, res: http.ServerResponse): void {
    try {
      const pending = handle(req, res);
      if (pending !== undefined) pending.catch((error: unknown) => fail(req, res, error));
    } catch (error) {
      fail(req, res, error);
    }
  }

  server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    // A pipelined request is parsed while the one before it is still being served. It waits for its
    // turn (node hands its answer the socket then), so that it is checked against every key and
    // value changed by the answers before it (docs/api.md §3: "the very next request").
    if (res.socket === null) res.once("socket", () => dispatch(req, res));
    else dispatch(req, res);
  });

  // Node would send "100 Continue" before any check; the pipeline sends it once the keys passed
  // (write()), so a client with a wrong key does not upload its body for nothing.
  server.on("checkContinue", (req: http.IncomingMessage, res: http.ServerResponse) => server.emit("request", req, res));

  // Requests node would answer itself, in plain text, go through the pipeline instead. An Expect other
  // than 100-continue may be ignored (RFC 9110 §10.1.1); CONNECT gets the 404 or 405 any method would.
  server.on("checkExpectation", (req: http.IncomingMessage, res: http.ServerResponse) => server.emit("request", req, res));
  server.on("connect", (req: http.IncomingMessage, socket: Socket) => {
    socket.on("error", () => socket.destroy()); // node has removed its own listeners from this socket
    const res = new http.ServerResponse(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket);
    res.on("finish", () => socket.end());
    server.emit("request", req, res);
  });

  server.on("clientError", (error: NodeJS.ErrnoException, socket: Socket) => {
    const inFlight = (socket as SocketWithResponse)._httpMessage;
    if (inFlight && !inFlight.headersSent && !inFlight.req.complete && socket.writable && error.code?.startsWith("HPE_")) {
      // The body of the request being served is malformed: that request gets the answer.
      answeredSockets.add(socket); // and the parser's repeats of the error get none
      fail(inFlight.req, inFlight, new ApiError(ERRORS.BAD_REQUEST));
      return;
    }
    answerClientError(error, socket);
  });
  return server;
}

type SocketWithResponse = Socket & { _httpMessage?: http.ServerResponse | null };

/**
 * Caps open connections at `max`. A connection beyond the cap closes the oldest one that is not
 * serving a request (idle, or still sending its headers), and only when every one is busy the
 * newcomer itself: a flood of idle or slow sockets cannot lock a real client out, whereas node's
 * own maxConnections would refuse everyone until they time out.
 */
function capConnections(server: http.Server, max: number): void {
  const open = new Set<Socket>(); // insertion order: oldest first
  // Over TLS the requests run on a TLSSocket wrapped around the TCP socket counted here (its _parent).
  const httpSocketOf = new WeakMap<Socket, SocketWithResponse>();
  server.on("secureConnection", (tlsSocket: SocketWithResponse & { _parent?: Socket }) => {
    if (tlsSocket._parent !== undefined) httpSocketOf.set(tlsSocket._parent, tlsSocket);
  });
  server.on("connection", (socket: Socket) => {
    open.add(socket);
    socket.once("close", () => open.delete(socket));
    if (open.size <= max) return;
    for (const candidate of open) {
      if ((httpSocketOf.get(candidate) ?? (candidate as SocketWithResponse))._httpMessage) continue;
      open.delete(candidate);
      candidate.destroy(); // over TLS, destroying the TCP socket closes the TLSSocket too
      return;
    }
  });
}

/**
 * A client that sends requests but never reads the answers keeps its connection busy for ever:
 * node's request timeouts end when a request has arrived, and capConnections spares busy
 * connections. A connection on which nothing moved for `ms` while an answer waits to be written
 * is cut; one waiting for our own work (a slow disk) is left alone.
 */
function cutStalledReaders(server: http.Server, ms: number): void {
  server.setTimeout(ms, (socket: SocketWithResponse) => {
    if (socket.writableLength > 0 || !socket._httpMessage) socket.destroy();
  });
}

const bodyConsumed = new WeakSet<http.IncomingMessage>();

/** A request as our server builds it: when it arrived, and the name of the pair its keys matched. */
class Request extends http.IncomingMessage {
  readonly started = performance.now();
  pair = "-";
}

const MAX_LOGGED_PATH = 256;

/** The path of a request target for the log: never the query string (it may hold anything). */
function loggedPath(url: string): string {
  const query = url.indexOf("?");
  const path = query === -1 ? url : url.slice(0, query);
  return path.length > MAX_LOGGED_PATH ? path.slice(0, MAX_LOGGED_PATH) + "..." : path;
}

function hostLines(rawHeaders: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (name.length === 4 && name.toLowerCase() === "host") n++;
  }
  return n;
}

function hasBody(req: http.IncomingMessage): boolean {
  const length = req.headers["content-length"];
  return req.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0");
}

function decodeName(raw: string): string | undefined {
  if (raw.indexOf("%") === -1) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}

function definedOnly(options: ServerOptions): Partial<typeof DEFAULT_LIMITS> {
  const out: Record<string, number> = {};
  for (const key of Object.keys(DEFAULT_LIMITS) as (keyof typeof DEFAULT_LIMITS)[]) {
    const v = options[key];
    if (v !== undefined) out[key] = v;
  }
  return out;
}

const answeredSockets = new WeakSet<Socket>();

/**
 * Requests node's parser refused (malformed, oversized headers) still get the envelope where the
 * socket can be written to, after the answers to the requests before them on the connection, which
 * is then closed; timeouts and resets are just closed.
 */
function answerClientError(error: NodeJS.ErrnoException, socket: Socket): void {
  const code = error.code ?? "";
  if (!socket.writable || code === "ECONNRESET" || code === "ERR_HTTP_REQUEST_TIMEOUT") {
    socket.destroy();
    return;
  }
  if (answeredSockets.has(socket)) return; // the parser repeats its error for every later chunk
  answeredSockets.add(socket);
  const entry = code === "HPE_HEADER_OVERFLOW" ? ERRORS.HEADERS_TOO_LARGE : ERRORS.BAD_REQUEST;
  const body = ERROR_BODIES.get(entry.code) as Buffer;
  const answer =
    `HTTP/1.1 ${entry.status} ${http.STATUS_CODES[entry.status]}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${body.length}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${body.toString()}`;
  const whenIdle = (): void => {
    const inFlight = (socket as SocketWithResponse)._httpMessage;
    if (inFlight) inFlight.once("close", whenIdle); // pipelined answers go first, in order
    else if (socket.writable) socket.end(answer);
    else socket.destroy();
  };
  whenIdle();
}

/**
 * Stops a server cleanly: no new connections, idle keep-alive connections closed at once, requests
 * in flight finished (their answers close the connection), the rest cut after `graceMs`.
 */
export function stopServer(server: http.Server, graceMs = 5_000): Promise<void> {
  closingServers.add(server);
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => server.closeAllConnections(), graceMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}
