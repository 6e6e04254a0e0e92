/**
 * Builds the API server of a loaded device: node's HTTP (or HTTPS) server with our limits, the
 * socket-level defences (connections.ts) and the request pipeline (pipeline.ts). Not listening yet.
 */

import * as http from "node:http";
import { DEFAULT_THROTTLE, Throttle, type ThrottleOptions } from "../access/throttle.ts";
import { SYSTEM_CLOCK, type Clock } from "../common/clock.ts";
import { SILENT, type Logger } from "../common/log.ts";
import type { OutputGate } from "../io/output-gate.ts";
import type { Device } from "../state/device.ts";
import { defendConnections, isClosing } from "./connections.ts";
import { Pipeline } from "./pipeline.ts";
import { Request } from "./send.ts";
import { httpsModule } from "./tls.ts";
import { WebHandler } from "../web/web-handler.ts";

export { stopServer } from "./connections.ts";

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
  /** The clock of the `time` stamps of writes and of the throttle. */
  readonly clock?: Clock;
  /** Milliseconds between two writes of the pairs' last use (docs/api.md §8; default 10 min). */
  readonly lastUseIntervalMs?: number;
  /** Milliseconds between two looks at the key deadlines (default 1 s; tests shorten it). */
  readonly keyLifeTickMs?: number;
  /** When set, the server speaks HTTPS (node:https) with this certificate and key (PEM); same API. */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /** The homepage's web root (docs/homepage.md); without it every page outside /api/ answers 404. */
  readonly wwwDir?: string;
  /** The I/O driver's gate on output writes (src/io/); without it, output writes commit at once. */
  readonly outputs?: OutputGate;
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

/** Builds the API server for a loaded device. It is not listening yet. */
export function createServer(device: Device, options: ServerOptions = {}): http.Server {
  const limits = { ...DEFAULT_LIMITS, ...definedOnly(options) };
  const log = options.log ?? SILENT;
  const server = nodeServer(limits, options.tls, log.request !== undefined);
  // One throttle for keys and passwords: a wrong password is a wrong key.
  const throttle = new Throttle(options.throttle ?? DEFAULT_THROTTLE);
  const clock = options.clock ?? SYSTEM_CLOCK;
  const closing = (): boolean => isClosing(server);
  const pipeline = new Pipeline({
    device,
    log,
    throttle,
    clock,
    maxBodyBytes: limits.maxBodyBytes,
    maxUrlBytes: limits.maxUrlBytes,
    allowedHosts: options.allowedHosts === undefined ? undefined : new Set(options.allowedHosts.map((h) => h.toLowerCase())),
    closing,
    web: new WebHandler({ device, log, throttle, clock, wwwDir: options.wwwDir, closing }),
    outputs: options.outputs,
  });
  // A pipelined request is parsed while the one before it is still being served. It waits for its
  // turn (node hands its answer the socket then), so that it is checked against every key and
  // value changed by the answers before it (docs/api.md §3: "the very next request").
  const dispatch = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (res.socket === null) res.once("socket", () => pipeline.dispatch(req, res));
    else pipeline.dispatch(req, res);
  };
  server.on("request", dispatch);
  // Grace, confirmation and expiry run on the same clock as everything else (access/key-life.ts).
  device.keyLife.start({ clock: options.clock ?? SYSTEM_CLOCK, log, lastUseIntervalMs: options.lastUseIntervalMs, tickMs: options.keyLifeTickMs });
  defendConnections(server, limits, { dispatch, answerError: pipeline.answerError, log });
  return server;
}

function nodeServer(limits: typeof DEFAULT_LIMITS, tls: ServerOptions["tls"], logRequests: boolean): http.Server {
  const httpOptions: http.ServerOptions = {
    // With request lines, our request class carries the arrival time and the pair that let it in.
    ...(logRequests ? { IncomingMessage: Request } : {}),
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: 1_000,
    // Node 20 answers a missing Host with its own plain 400; the pipeline answers it with the envelope.
    requireHostHeader: false,
  };
  if (tls === undefined) return http.createServer(httpOptions);
  // https.Server is an http.Server over TLS; a handshake gets as long as a request's headers.
  return httpsModule().createServer({ ...httpOptions, cert: tls.cert, key: tls.key, handshakeTimeout: limits.headersTimeoutMs }) as http.Server;
}

function definedOnly(options: ServerOptions): Partial<typeof DEFAULT_LIMITS> {
  const out: Record<string, number> = {};
  for (const key of Object.keys(DEFAULT_LIMITS) as (keyof typeof DEFAULT_LIMITS)[]) {
    const v = options[key];
    if (v !== undefined) out[key] = v;
  }
  return out;
}
