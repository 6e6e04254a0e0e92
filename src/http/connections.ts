/**
 * Socket-level defences, apart from the request pipeline: a connection cap that sheds idle sockets
 * first, clients that stop reading, requests node's parser refuses, CONNECT and Expect, and a clean
 * stop. Node's private socket fields are read here and nowhere else.
 */

import * as http from "node:http";
import type { Socket } from "node:net";
import type { Logger } from "../common/log.ts";
import { errorEnvelope, ERRORS, type CatalogueEntry } from "./errors.ts";

/** What the defences need of the pipeline: a way to hand it a request, to answer one with an error, and the log. */
export interface PipelineHooks {
  readonly dispatch: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  readonly answerError: (req: http.IncomingMessage, res: http.ServerResponse, error: CatalogueEntry, detail: string) => void;
  readonly log: Logger;
}

/** Limits the defences enforce. */
export interface ConnectionLimits {
  readonly maxConnections: number;
  /** A connection on which nothing moved for this long while an answer waits to be written is cut. */
  readonly requestTimeoutMs: number;
}

/** Installs every socket-level defence on `server`, routing requests to the pipeline. */
export function defendConnections(server: http.Server, limits: ConnectionLimits, hooks: PipelineHooks): void {
  const open = trackConnections(server);
  capConnections(server, open, limits.maxConnections);
  cutStalledReaders(server, open, limits.requestTimeoutMs);
  routeSpecialRequests(server, hooks, limits.requestTimeoutMs);
  answerParserErrors(server, hooks);
  answerPlainHttpOnTls(server);
}

// ---- Node's private fields, in one place ----------------------------------------------------------

type NodeSocket = Socket & { _httpMessage?: http.ServerResponse | null; _parent?: Socket };

/** The answer node is writing on `socket`, if any (node's `_httpMessage`). */
function responseInFlight(socket: Socket): http.ServerResponse | undefined {
  return (socket as NodeSocket)._httpMessage ?? undefined;
}

/** The TCP socket under a TLS socket (node's `_parent`). */
function tcpSocketOf(tlsSocket: Socket): Socket | undefined {
  return (tlsSocket as NodeSocket)._parent;
}

// ---- The defences ---------------------------------------------------------------------------------

/**
 * The open connections of a server, oldest first: each TCP socket with the socket its requests run
 * on (itself, or over TLS the TLSSocket around it) and what the stalled-reader sweep last saw of it.
 */
interface Connection {
  http: Socket;
  /** Bytes that had left the socket's buffer at the last sweep that found some waiting; -1: none waiting. */
  flushed: number;
  /** When the sweep last saw bytes leave (or first saw some waiting). */
  since: number;
}

type OpenConnections = Map<Socket, Connection>;

function trackConnections(server: http.Server): OpenConnections {
  const open: OpenConnections = new Map(); // insertion order: oldest first
  server.on("connection", (socket: Socket) => {
    open.set(socket, { http: socket, flushed: -1, since: 0 });
    socket.once("close", () => open.delete(socket));
  });
  // Over TLS the requests run on a TLSSocket wrapped around the TCP socket counted here.
  server.on("secureConnection", (tlsSocket: Socket) => {
    const tcp = tcpSocketOf(tlsSocket);
    const connection = tcp === undefined ? undefined : open.get(tcp);
    if (connection !== undefined) connection.http = tlsSocket;
  });
  return open;
}

/**
 * Caps open connections at `max`. A connection beyond the cap closes the oldest one that is not
 * serving a request (idle, or still sending its headers), and only when every one is busy the
 * newcomer itself: a flood of idle or slow sockets cannot lock a real client out, whereas node's
 * own maxConnections would refuse everyone until they time out.
 */
function capConnections(server: http.Server, open: OpenConnections, max: number): void {
  server.on("connection", () => {
    if (open.size <= max) return;
    for (const [candidate, connection] of open) {
      if (responseInFlight(connection.http) !== undefined) continue;
      open.delete(candidate);
      candidate.destroy(); // over TLS, destroying the TCP socket closes the TLSSocket too
      return;
    }
  });
}

/**
 * A client that sends requests but never reads the answers keeps its connection busy for ever:
 * node's request timeouts end when a request has arrived, and capConnections spares busy
 * connections. A connection whose answers wait to be written (bytes in its buffer) and of which
 * nothing left for `ms` is cut; one waiting for our own work (a slow disk) has nothing to write and
 * is left alone. Idle and half-sent requests are node's own timeouts' (headers, request, keep-alive).
 *
 * A sweep over the open connections, rather than a timeout on every socket: a socket timeout is a
 * timer refreshed by every read and write of every connection, a cost on every request, whereas
 * the sweep runs once a second (and no more often than `ms`) whatever the load. A stalled reader is
 * cut between `ms` and `ms` plus one sweep after its answers stopped leaving.
 */
function cutStalledReaders(server: http.Server, open: OpenConnections, ms: number): void {
  const sweep = (): void => {
    const now = performance.now();
    for (const connection of open.values()) {
      const socket = connection.http;
      const waiting = socket.writableLength;
      if (waiting === 0) {
        connection.flushed = -1;
        continue;
      }
      const flushed = socket.bytesWritten - waiting;
      if (flushed !== connection.flushed) {
        connection.flushed = flushed;
        connection.since = now;
      } else if (now - connection.since >= ms) {
        socket.destroy();
      }
    }
  };
  let timer: NodeJS.Timeout | undefined;
  server.on("listening", () => {
    clearInterval(timer);
    timer = setInterval(sweep, Math.min(SWEEP_MS, ms));
    timer.unref();
  });
  server.on("close", () => clearInterval(timer));
}

/** How often the open connections are swept for stalled readers (node checks its own request timeouts as often). */
const SWEEP_MS = 1_000;

/**
 * Requests node would answer itself, in plain text, go through the pipeline instead. Node would send
 * "100 Continue" before any check; the pipeline sends it once the keys passed, so a client with a
 * wrong key does not upload its body for nothing. An Expect other than 100-continue may be ignored
 * (RFC 9110 §10.1.1). CONNECT gets the 404 or 405 any method would, and a request asking for an
 * Upgrade is served as if it had not asked (RFC 9110 §7.8): both on a socket node has let go of.
 */
function routeSpecialRequests(server: http.Server, hooks: PipelineHooks, timeoutMs: number): void {
  server.on("checkContinue", hooks.dispatch);
  server.on("checkExpectation", hooks.dispatch);
  const serve = (req: http.IncomingMessage, socket: Socket): void => serveThenClose(server, hooks, req, socket, timeoutMs);
  server.on("connect", serve);
  server.on("upgrade", serve);
}

/** Sockets node handed over (CONNECT, Upgrade) that are not closed yet, per server: a stop closes them. */
const handedOver = new WeakMap<http.Server, Set<Socket>>();

/**
 * Answers the one request of a socket node no longer tracks, then closes it whole. Node's own
 * timeouts and the connection cap no longer see such a socket, and a half-close would leave it open
 * for as long as the client likes: so the answer is followed by a full close, a client that does
 * not take the answer is cut after `timeoutMs`, and a stop closes what is left. Whatever the client
 * sent after the request (a pipelined request) is not served: the closed connection tells it so.
 */
function serveThenClose(server: http.Server, hooks: PipelineHooks, req: http.IncomingMessage, socket: Socket, timeoutMs: number): void {
  let open = handedOver.get(server);
  if (open === undefined) handedOver.set(server, (open = new Set()));
  open.add(socket);
  socket.once("close", () => open.delete(socket));
  socket.on("error", () => socket.destroy()); // node has removed its own listeners from this socket
  socket.setTimeout(timeoutMs, () => socket.destroy());
  const res = new http.ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket);
  res.once("finish", () => {
    res.detachSocket(socket);
    socket.destroySoon(); // written out, then closed both ways
  });
  hooks.dispatch(req, res);
}

const answeredSockets = new WeakSet<Socket>();

/**
 * Requests node's parser refused (malformed, oversized headers) still get the envelope where the
 * socket can be written to, after the answers to the requests before them on the connection, which
 * is then closed; timeouts and resets are just closed. A malformed body of the request being
 * served gets its answer through the pipeline.
 */
function answerParserErrors(server: http.Server, hooks: PipelineHooks): void {
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Socket) => {
    const inFlight = responseInFlight(socket);
    if (inFlight && !inFlight.headersSent && !inFlight.req.complete && socket.writable && error.code?.startsWith("HPE_")) {
      answeredSockets.add(socket); // the parser's repeats of the error get no answer
      // A client that half-closes in the middle of its body ends the parser in mid-state (HPE_INVALID_EOF_STATE).
      const cut = error.code === "HPE_INVALID_EOF_STATE";
      hooks.answerError(inFlight.req, inFlight, ERRORS.BAD_REQUEST, cut ? "the body ended before the length it announced" : "the body is malformed HTTP (its chunked framing or length)");
      return;
    }
    answerClientError(error, socket, hooks.log);
  });
}

const MALFORMED_BODY = errorEnvelope(ERRORS.BAD_REQUEST, "the request is not well-formed HTTP/1.1, so the connection is closed");
const HEADERS_TOO_LARGE_BODY = errorEnvelope(ERRORS.HEADERS_TOO_LARGE, "the request line and headers are over the limit (8 KiB by default)");

function answerClientError(error: NodeJS.ErrnoException, socket: Socket, log: Logger): void {
  const code = error.code ?? "";
  if (!socket.writable || code === "ECONNRESET" || code === "ERR_HTTP_REQUEST_TIMEOUT") {
    socket.destroy();
    return;
  }
  if (answeredSockets.has(socket)) return; // the parser repeats its error for every later chunk
  answeredSockets.add(socket);
  const overflow = code === "HPE_HEADER_OVERFLOW";
  const entry = overflow ? ERRORS.HEADERS_TOO_LARGE : ERRORS.BAD_REQUEST;
  // The parser's code names what was wrong (HPE_INVALID_METHOD ...); the bytes are never logged.
  log.log("warn", "request refused by the HTTP parser", { event: "parser-refused", client: socket.remoteAddress, reason: code || "unknown", status: entry.status });
  const body = overflow ? HEADERS_TOO_LARGE_BODY : MALFORMED_BODY;
  const answer =
    `HTTP/1.1 ${entry.status} ${http.STATUS_CODES[entry.status]}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${body.length}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n${body.toString()}`;
  const whenIdle = (): void => {
    const inFlight = responseInFlight(socket);
    if (inFlight) inFlight.once("close", whenIdle); // pipelined answers go first, in order
    else if (socket.writable) socket.end(answer);
    else socket.destroy();
  };
  whenIdle();
}

const PLAIN_ON_TLS_BODY = "This port speaks HTTPS: use https:// instead of http://.\n";
const PLAIN_ON_TLS =
  `HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(PLAIN_ON_TLS_BODY)}\r\n` +
  `Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n${PLAIN_ON_TLS_BODY}`;

/**
 * A plain-HTTP request sent to the HTTPS port gets a short plain answer saying so, as well-known
 * servers do, instead of an empty reply: OpenSSL recognises the request line (ERR_SSL_HTTP_REQUEST),
 * and the answer goes on the TCP socket under the failed TLS one. It is not the JSON envelope: a
 * client that does not speak TLS to the port is not speaking the API yet.
 */
function answerPlainHttpOnTls(server: http.Server): void {
  server.on("tlsClientError", (error: NodeJS.ErrnoException, tlsSocket: Socket) => {
    const tcp = tcpSocketOf(tlsSocket);
    if (error.code === "ERR_SSL_HTTP_REQUEST" && tcp !== undefined && tcp.writable) tcp.end(PLAIN_ON_TLS);
  });
}

// ---- Stopping -------------------------------------------------------------------------------------

const closingServers = new WeakSet<http.Server>();

/** Whether `server` is stopping: its answers then close their connections. */
export function isClosing(server: http.Server): boolean {
  return closingServers.has(server);
}

/**
 * Stops a server cleanly: no new connections, idle keep-alive connections closed at once, requests
 * in flight finished (their answers close the connection), the rest cut after `graceMs`.
 */
export function stopServer(server: http.Server, graceMs = 5_000): Promise<void> {
  closingServers.add(server);
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.closeAllConnections();
      for (const socket of handedOver.get(server) ?? []) socket.destroy();
    }, graceMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}
