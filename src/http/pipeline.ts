/**
 * The request pipeline, read top to bottom (docs/api.md §5): the request target and Host, the
 * endpoint, the method, the throttle and the keys, then the path, then read or write. Authorization
 * comes before any lookup, so a client without the key learns nothing of what lies behind it.
 */

import type * as http from "node:http";
import { auditKeySet, warnOpenEndpoints, type AuditTrail } from "../access/audit.ts";
import { lifeRefusal } from "../access/key-life.ts";
import { DUPLICATED, keyMatches, type KeyPair } from "../access/keys.ts";
import type { Throttle } from "../access/throttle.ts";
import { factoryKeysOf, WEAK_KEY_HEADER, weakKeyHeader, type WeakKeyWarning } from "../access/weak-keys.ts";
import type { Clock } from "../common/clock.ts";
import type { Logger } from "../common/log.ts";
import { OutputRefused, type OutputGate } from "../io/output-gate.ts";
import { APIKEYS_ENDPOINT, type Device, type Endpoint } from "../state/device.ts";
import { decodeSegments, deepFreeze, select, type Json } from "../state/documents.ts";
import { isObject } from "../state/schema.ts";
import { applyWrite, NO_SUCH_PATH } from "../state/write-rules.ts";
import { bodyFormat, parseBody, readBody, type Fields } from "./body.ts";
import { ApiError, ERRORS, errorEnvelope, okEnvelope, type CatalogueEntry } from "./errors.ts";
import { scanHeads, type Heads } from "./heads.ts";
import { ERROR_BODIES, loggedPath, markBodyRead, sendEnvelope, type Request } from "./send.ts";
import type { WebHandler } from "../web/web-handler.ts";

const PREFIX = "/api/v1/";
const ALLOW_ALL = "GET, HEAD, PUT";
const ALLOW_READ_ONLY = "GET, HEAD";
/** Cached answers per endpoint; the set of paths a client can ask for is open-ended. */
const MAX_CACHED_ANSWERS = 128;

/** What the pipeline works with; built once by createServer. */
export interface PipelineContext {
  readonly device: Device;
  readonly log: Logger;
  readonly throttle: Throttle;
  readonly clock: Clock;
  readonly maxBodyBytes: number;
  readonly maxUrlBytes: number;
  /** Host header values accepted (lower case); undefined accepts any. */
  readonly allowedHosts: ReadonlySet<string> | undefined;
  /** Whether the server is stopping (answers then close their connections). */
  readonly closing: () => boolean;
  /** The homepage: every path outside /api/ (docs/homepage.md); without it, those are error 2. */
  readonly web?: WebHandler;
  /** The I/O driver's gate on output writes (docs/api.md §12); undefined: writes commit at once. */
  readonly outputs?: OutputGate | undefined;
}

/** Serves the requests of one server. */
export class Pipeline {
  /** Where key changes are audited: the log, with the device's fingerprint secret. */
  private readonly trail: AuditTrail;
  /** The factory keys, which a PUT is warned about setting again. */
  private readonly factoryKeys: ReadonlySet<string>;
  /** Whether answers get a request line (the requests are then `Request`s, see server.ts). */
  private readonly logRequests: boolean;

  constructor(private readonly ctx: PipelineContext) {
    this.trail = { log: ctx.log, secret: ctx.device.fingerprintSecret };
    this.factoryKeys = factoryKeysOf(ctx.device.factory.get(APIKEYS_ENDPOINT));
    this.logRequests = ctx.log.request !== undefined;
  }

  /** Serves one request; every failure becomes its catalogue envelope. */
  readonly dispatch = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const heads = scanHeads(req.rawHeaders);
    try {
      const pending = this.handle(req, res, heads);
      if (pending !== undefined) pending.catch((error: unknown) => this.fail(req, res, error, heads));
    } catch (error) {
      this.fail(req, res, error, heads);
    }
  };

  /** Answers a request with a catalogue error (for the connection defences). */
  readonly answerError = (req: http.IncomingMessage, res: http.ServerResponse, entry: CatalogueEntry, detail: string): void => {
    this.fail(req, res, new ApiError(entry, detail));
  };

  private handle(req: http.IncomingMessage, res: http.ServerResponse, heads: Heads): void | Promise<void> {
    const url = req.url ?? "";
    if (url.length > this.ctx.maxUrlBytes) throw new ApiError(ERRORS.HEADERS_TOO_LARGE, `the request target is over ${this.ctx.maxUrlBytes} bytes`);
    this.checkHost(req, heads);
    const query = url.indexOf("?");
    const path = query === -1 ? url : url.slice(0, query);
    if (this.ctx.web !== undefined && path.startsWith("/") && !path.startsWith("/api/")) return this.ctx.web.serve(req, res, path);
    if (!path.startsWith(PREFIX)) throw new ApiError(ERRORS.ENDPOINT_NOT_FOUND, "the API is under /api/v1/; GET /api/v1/ lists its endpoints");
    const rest = path.slice(PREFIX.length);
    if (rest === "") return this.index(req, res, heads);
    const slash = rest.indexOf("/");
    const endpointName = decodeName(slash === -1 ? rest : rest.slice(0, slash));
    const endpoint = endpointName === undefined ? undefined : this.ctx.device.endpoints.get(endpointName);
    if (endpoint === undefined) throw new ApiError(ERRORS.ENDPOINT_NOT_FOUND, "no such endpoint; GET /api/v1/ lists them");

    const method = req.method;
    const isRead = method === "GET" || method === "HEAD";
    if (!isRead && (method !== "PUT" || !endpoint.writable)) {
      const detail = endpoint.writable ? "this endpoint takes GET, HEAD and PUT" : `${endpoint.name} is read-only: it takes GET and HEAD`;
      throw new ApiError(ERRORS.METHOD_NOT_ALLOWED, detail, { Allow: endpoint.writable ? ALLOW_ALL : ALLOW_READ_ONLY });
    }
    const subPath = slash === -1 ? "" : rest.slice(slash + 1);
    const waiting = this.authorize(req, heads, endpoint, !isRead);
    if (waiting !== undefined) return waiting.then(() => this.serve(req, res, heads, endpoint, isRead, path, subPath));
    return this.serve(req, res, heads, endpoint, isRead, path, subPath);
  }

  private serve(req: http.IncomingMessage, res: http.ServerResponse, heads: Heads, endpoint: Endpoint, isRead: boolean, path: string, subPath: string): void | Promise<void> {
    // One trailing slash is forgiven ("name/"); "//" keeps an empty segment, a malformed path.
    if (subPath.length > 1 && subPath.endsWith("/")) subPath = subPath.slice(0, -1);
    if (isRead) return this.read(req, res, heads, endpoint, path, subPath);
    return this.write(req, res, heads, endpoint, subPath);
  }

  /**
   * `GET /api/v1/`: what a user tries first. Each endpoint's name and whether reading and writing
   * need a key (`writeKey` null: not writable at all), nothing else; anyone may ask, as anyone
   * may try each endpoint. Computed per request: a key change opens or closes an endpoint.
   */
  private index(req: http.IncomingMessage, res: http.ServerResponse, heads: Heads): void {
    if (req.method !== "GET" && req.method !== "HEAD") {
      throw new ApiError(ERRORS.METHOD_NOT_ALLOWED, "the list of endpoints takes GET and HEAD", { Allow: ALLOW_READ_ONLY });
    }
    const keyring = this.ctx.device.keyring;
    const list = [...this.ctx.device.endpoints.values()].map((e) => {
      const pair = keyring.get(e.name);
      const readKey = e.keyed && (pair === undefined || pair.rd !== "");
      const writeKey = !e.writable ? null : readKey || pair === undefined || pair.wr !== "";
      return { name: e.name, readKey, writeKey };
    });
    this.answer(req, res, heads.body, 200, okEnvelope(JSON.stringify(list)));
  }

  /**
   * HTTP/1.1 requires exactly one Host (RFC 9112 §3.2; node keeps the first of several); with an
   * allow-list, only the listed values pass (a DNS-rebinding defence).
   */
  private checkHost(req: http.IncomingMessage, heads: Heads): void {
    const host = heads.host;
    const allowed = this.ctx.allowedHosts;
    // Which Host values are allowed is never said: it would map the device's names for a rebinding page.
    if (host === undefined && (allowed !== undefined || req.httpVersion === "1.1")) throw new ApiError(ERRORS.BAD_REQUEST, "the request has no Host header");
    if (host !== undefined && allowed !== undefined && !allowed.has(host.toLowerCase())) {
      this.ctx.log.log("warn", "request refused: its Host is not allowed", { event: "host-refused", client: req.socket.remoteAddress });
      throw new ApiError(ERRORS.BAD_REQUEST, "this Host is not allowed here");
    }
    if (heads.hostLines > 1) throw new ApiError(ERRORS.BAD_REQUEST, "the Host header is sent twice");
  }

  /**
   * Checks the throttle and the keys the request needs (docs/api.md §3), then the pair's life (§8);
   * throws 12, 9, 3, 4, 16 or 17. Returns a promise to wait for when a deadline or a confirmation
   * has to be made durable first.
   */
  private authorize(req: http.IncomingMessage, heads: Heads, endpoint: Endpoint, isWrite: boolean): Promise<void> | undefined {
    if (!endpoint.keyed) return undefined;
    const pair = this.ctx.device.keyring.get(endpoint.name);
    if (pair === undefined) throw new ApiError(ERRORS.READ_DENIED, "this endpoint has no key pair, so nobody may read it"); // never open an endpoint for want of a pair
    if (!pair.plain) return this.authorizeLife(req, heads, endpoint, pair, isWrite);
    const needRead = pair.rd !== "";
    const needWrite = isWrite && pair.wr !== "";
    const now = this.ctx.clock();
    const address = req.socket.remoteAddress ?? "";
    if (needRead || needWrite) {
      this.checkThrottle(address, now);
      if (needRead) this.checkKey(req, heads.rd, pair.rdSlot, undefined, ERRORS.READ_DENIED, "ApiRdKey", address, endpoint.name);
      if (needWrite) this.checkKey(req, heads.wr, pair.wrSlot, undefined, ERRORS.WRITE_DENIED, "ApiWrKey", address, endpoint.name);
      if (this.logRequests) (req as Request).pair = endpoint.name;
    }
    // The last use, in memory (access/last-use.ts): two field writes.
    pair.use.ms = now;
    pair.use.from = address;
    return undefined;
  }

  /**
   * The keys checked again once a PUT's body has arrived, against the keys as they are now: a pair
   * changed, switched off or expired while the body was on its way (the request timeout allows
   * seconds) refuses it, as it would refuse a new request. No deadline is applied and no use is
   * recorded here (authorize did both); for `apikeys` it runs inside the key writer's queue, after
   * every change queued before it.
   */
  private authorizeAgain(req: http.IncomingMessage, heads: Heads, endpoint: Endpoint): void {
    if (!endpoint.keyed) return;
    const pair = this.ctx.device.keyring.get(endpoint.name);
    if (pair === undefined) throw new ApiError(ERRORS.READ_DENIED, "this endpoint has no key pair, so nobody may read it");
    const now = this.ctx.clock();
    const previous = !pair.plain && now < pair.graceUntilMs ? pair.previous : undefined;
    const address = req.socket.remoteAddress ?? "";
    if (pair.rd !== "" && previous?.rd !== "") this.checkKey(req, heads.rd, pair.rdSlot, previous?.rdSlot, ERRORS.READ_DENIED, "ApiRdKey", address, endpoint.name);
    if (pair.wr !== "" && previous?.wr !== "") this.checkKey(req, heads.wr, pair.wrSlot, previous?.wrSlot, ERRORS.WRITE_DENIED, "ApiWrKey", address, endpoint.name);
    if (!pair.plain) {
      const refusal = lifeRefusal(pair, now, address);
      if (refusal !== undefined) throw refusal;
    }
  }

  private checkThrottle(address: string, now: number): void {
    const throttle = this.ctx.throttle;
    if (!throttle.watching) return; // nobody has sent a wrong key that still counts
    const waitMs = throttle.blockedFor(address, now);
    if (waitMs > 0) {
      const seconds = String(Math.ceil(waitMs / 1000));
      throw new ApiError(ERRORS.TOO_MANY_ATTEMPTS, "too many wrong keys from this address: try again after the seconds in Retry-After", { "Retry-After": seconds });
    }
  }

  /**
   * The key check of a pair with a life (docs/api.md §8): a passed confirmation deadline is applied
   * first; the current keys or, within the grace, the previous ones; then 16 and 17, which only a
   * client that presented the right keys (or any client, where the keys are empty) ever sees; a
   * request presenting the new keys of a pending change confirms it.
   */
  private authorizeLife(req: http.IncomingMessage, heads: Heads, endpoint: Endpoint, pair: KeyPair, isWrite: boolean): Promise<void> | undefined {
    const now = this.ctx.clock();
    const life = this.ctx.device.keyLife;
    if (now >= pair.confirmUntilMs) return life.applyDue(now).then(() => this.authorize(req, heads, endpoint, isWrite));
    const previous = now < pair.graceUntilMs ? pair.previous : undefined;
    const needRead = pair.rd !== "" && previous?.rd !== "";
    const needWrite = isWrite && pair.wr !== "" && previous?.wr !== "";
    const address = req.socket.remoteAddress ?? "";
    let current = 0;
    if (needRead || needWrite) {
      this.checkThrottle(address, now);
      if (needRead && this.checkKey(req, heads.rd, pair.rdSlot, previous?.rdSlot, ERRORS.READ_DENIED, "ApiRdKey", address, endpoint.name)) current |= 1;
      if (needWrite && this.checkKey(req, heads.wr, pair.wrSlot, previous?.wrSlot, ERRORS.WRITE_DENIED, "ApiWrKey", address, endpoint.name)) current |= 2;
      if (this.logRequests) (req as Request).pair = endpoint.name;
    }
    const refusal = lifeRefusal(pair, now, address);
    if (refusal !== undefined) throw refusal;
    pair.use.ms = now;
    pair.use.from = address;
    if (pair.confirmUntilMs === Infinity) return undefined;
    // The new keys, each one presented (an empty one needs no header; a write key only a write checks).
    const rdShown = !pair.confirmRd || pair.rd === "" || (current & 1) !== 0;
    const wrShown = !pair.confirmWr || pair.wr === "" || (current & 2) !== 0;
    return rdShown && wrShown ? life.confirm(endpoint.name, address) : undefined;
  }

  /**
   * Checks one presented key; true when the current key matched (false: the previous one, within
   * its grace). A 401 or 403 says which header is missing or wrong, and nothing about what the key guards.
   */
  private checkKey(req: http.IncomingMessage, presented: string | undefined | typeof DUPLICATED, stored: Buffer, previous: Buffer | undefined, denied: CatalogueEntry, header: string, address: string, endpoint: string): boolean {
    if (presented === DUPLICATED) throw new ApiError(ERRORS.BAD_REQUEST, `the ${header} header is sent twice`);
    if (presented === undefined) throw new ApiError(denied, missingKeyDetail(req, header));
    const current = keyMatches(stored, presented);
    // Both compared whenever a grace is on: the time says nothing of which one matched.
    const old = previous !== undefined && keyMatches(previous, presented);
    if (current || old) return current;
    const blockMs = this.ctx.throttle.recordFailure(address, this.ctx.clock());
    this.ctx.log.log("warn", "refused key", { event: "key-refused", client: address, endpoint, header });
    if (blockMs > 0) this.ctx.log.log("warn", "address blocked after too many wrong keys", { event: "throttle-block", client: address, seconds: Math.ceil(blockMs / 1000) });
    throw new ApiError(denied, `the ${header} header does not hold this endpoint's ${header === "ApiRdKey" ? "read" : "write"} key`);
  }

  private read(req: http.IncomingMessage, res: http.ServerResponse, heads: Heads, endpoint: Endpoint, path: string, subPath: string): void {
    if (endpoint.name === APIKEYS_ENDPOINT) return this.readKeys(req, res, heads, endpoint, path, subPath);
    let body = endpoint.answers.get(path);
    if (body === undefined) {
      const segments = decodeSegments(subPath);
      if (segments === null) throw new ApiError(ERRORS.BAD_REQUEST, MALFORMED_PATH);
      const selection = select(endpoint.docs.committed, segments);
      if (selection === undefined) throw new ApiError(ERRORS.PATH_NOT_FOUND, NO_SUCH_PATH);
      body = okEnvelope(JSON.stringify(selection.value));
      if (endpoint.answers.size >= MAX_CACHED_ANSWERS) endpoint.answers.clear();
      endpoint.answers.set(path, body);
    }
    this.answer(req, res, heads.body, 200, body);
  }

  /**
   * `apikeys` is read with each pair's last use as it stands in memory (docs/api.md §8); its answers
   * are cached until the document or a pair's last use (to the second) changes.
   */
  private readKeys(req: http.IncomingMessage, res: http.ServerResponse, heads: Heads, endpoint: Endpoint, path: string, subPath: string): void {
    const life = this.ctx.device.keyLife;
    const committed = endpoint.docs.committed;
    let body = life.cachedAnswer(committed, path);
    if (body === undefined) {
      const segments = decodeSegments(subPath);
      if (segments === null) throw new ApiError(ERRORS.BAD_REQUEST, MALFORMED_PATH);
      const selection = select(life.live(committed), segments);
      if (selection === undefined) throw new ApiError(ERRORS.PATH_NOT_FOUND, NO_SUCH_PATH);
      body = okEnvelope(JSON.stringify(selection.value));
      life.cacheAnswer(path, body);
    }
    this.answer(req, res, heads.body, 200, body);
  }

  private async write(req: http.IncomingMessage, res: http.ServerResponse, heads: Heads, endpoint: Endpoint, subPath: string): Promise<void> {
    const { device, log } = this.ctx;
    // The keys passed: now the client may send its body (node would have said so before any check).
    if (req.headers.expect?.toLowerCase() === "100-continue") res.writeContinue();
    const raw = await readBody(req, this.ctx.maxBodyBytes);
    markBodyRead(req);
    const fields = parseBody(bodyFormat(req.headers["content-type"]), raw);
    const segments = decodeSegments(subPath);
    if (segments === null) throw new ApiError(ERRORS.BAD_REQUEST, MALFORMED_PATH);
    if (endpoint.name === APIKEYS_ENDPOINT) return this.writeKeys(req, res, heads, endpoint, segments, fields);
    this.authorizeAgain(req, heads, endpoint);
    const now = Math.floor(this.ctx.clock() / 1000);
    const next = applyWrite(endpoint.name, endpoint.docs.latest, segments, fields, device.schema, now);
    const commit = async (doc: Json): Promise<void> => {
      try {
        await endpoint.docs.change(deepFreeze(doc));
      } catch (error) {
        log.log("error", "change not made durable", { endpoint: endpoint.name, detail: (error as NodeJS.ErrnoException).code ?? String(error) });
        throw new ApiError(ERRORS.STORAGE, "the change could not be made durable, so nothing changed; the device's log says why");
      }
    };
    const gate = this.ctx.outputs;
    if (gate === undefined) await commit(next);
    else {
      // Outputs wait for the driver (error 18 after the member errors); the document is then built
      // again on the latest one, which input values may have changed meanwhile.
      const rebuilt = (): Promise<void> => commit(applyWrite(endpoint.name, endpoint.docs.latest, segments, fields, device.schema, now));
      await gate.write({ endpoint: endpoint.name, segments, members: [...fields.values.keys()], next }, rebuilt).catch((error: unknown) => {
        throw error instanceof OutputRefused ? new ApiError(ERRORS.IO, error.message) : error;
      });
    }
    const selection = select(endpoint.docs.committed, segments);
    this.answer(req, res, heads.body, 200, okEnvelope(JSON.stringify(selection?.value ?? null)));
  }

  /** A PUT on `apikeys`: through the key-life writer (grace, confirm, the guards of key management), then audited. */
  private async writeKeys(req: http.IncomingMessage, res: http.ServerResponse, heads: Heads, endpoint: Endpoint, segments: string[], fields: Fields): Promise<void> {
    const life = this.ctx.device.keyLife;
    const written = await life.put(segments, fields, req.socket.remoteAddress ?? "", this.ctx.clock(), () => this.authorizeAgain(req, heads, endpoint));
    // A PUT on a pair, or on one key of it (keys/<n>/rd): the pair is the first two segments.
    const warnings = this.auditKeys(req, written.after, written.clear ?? {});
    // The keys this PUT set are shown in its answer (on a sealed device, the one answer that shows them).
    const shown = life.answerOf(endpoint.docs.committed, segments, written);
    // Weak keys are stored all the same; the warning rides in a header, the envelope stays as it is.
    const extra = warnings.length > 0 ? { [WEAK_KEY_HEADER]: weakKeyHeader(warnings) } : undefined;
    this.answer(req, res, heads.body, 200, okEnvelope(JSON.stringify(shown ?? null)), extra);
  }

  /** A PUT on a pair (or on one of its keys) audits each key it set (in clear, never shown); returns the weak-key warnings. */
  private auditKeys(req: http.IncomingMessage, written: unknown, clear: Partial<Record<"rd" | "wr", string>>): WeakKeyWarning[] {
    const warnings: WeakKeyWarning[] = [];
    if (!isObject(written) || typeof written["name"] !== "string") return warnings;
    for (const side of ["rd", "wr"] as const) {
      const key = clear[side];
      if (key === undefined) continue;
      warnings.push(...auditKeySet(this.trail, this.factoryKeys, written["name"], side, key, { client: req.socket.remoteAddress }));
    }
    // An emptied key opens an endpoint: the start's warning, at once.
    if (warnings.some((w) => w.reason === "empty")) warnOpenEndpoints(this.ctx.log, this.ctx.device.provisioningReport().open);
    return warnings;
  }

  /** Answers with the error's envelope; `heads` when the pipeline already scanned them (not rescanned). */
  private fail(req: http.IncomingMessage, res: http.ServerResponse, error: unknown, heads?: Heads): void {
    let entry: CatalogueEntry = ERRORS.INTERNAL;
    let detail: string | undefined;
    let extra: Readonly<Record<string, string>> | undefined;
    if (error instanceof ApiError) {
      entry = error.entry;
      detail = error.detail;
      extra = error.extraHeaders;
    } else {
      this.ctx.log.log("error", "internal error", { method: req.method, detail: error instanceof Error ? error.stack ?? error.message : String(error) });
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (this.logRequests) (req as Request).refusal = detail ?? entry.message;
    this.answer(req, res, (heads ?? scanHeads(req.rawHeaders)).body, entry.status, errorBody(entry, detail), extra);
  }

  /** Sends an envelope (`hasBody`: the request came with one), then the request line of the log (when request lines are on). */
  private answer(req: http.IncomingMessage, res: http.ServerResponse, hasBody: boolean, status: number, body: Buffer, extra?: Readonly<Record<string, string>>): void {
    sendEnvelope(req, res, hasBody, status, body, extra, this.ctx.closing());
    const log = this.ctx.log;
    if (log.request !== undefined) {
      const r = req as Request;
      log.request(req.socket.remoteAddress ?? "-", req.method ?? "-", loggedPath(req.url ?? ""), status, performance.now() - r.started, r.pair, r.refusal);
    }
  }
}

/** Error bodies by code and detail, made once each: the set of details is small and fixed. */
const errorBodies = new Map<string, Buffer>();
const MAX_ERROR_BODIES = 256;

function errorBody(entry: CatalogueEntry, detail: string | undefined): Buffer {
  if (detail === undefined) return ERROR_BODIES.get(entry.code) as Buffer;
  const key = `${entry.code}:${detail}`;
  let body = errorBodies.get(key);
  if (body === undefined) {
    if (errorBodies.size >= MAX_ERROR_BODIES) errorBodies.clear();
    body = errorEnvelope(entry, detail);
    errorBodies.set(key, body);
  }
  return body;
}

const MALFORMED_PATH = "the path is malformed: an empty segment (//) or a bad %-escape";

/** A key header is missing: which one, and where keys travel when they came in Authorization instead. */
function missingKeyDetail(req: http.IncomingMessage, header: string): string {
  if (req.headers.authorization !== undefined) return "keys travel in the ApiRdKey and ApiWrKey headers, not in Authorization";
  return header === "ApiRdKey" ? "this endpoint needs its read key in the ApiRdKey header" : "writing needs the write key in the ApiWrKey header, besides the read key";
}

function decodeName(raw: string): string | undefined {
  if (raw.indexOf("%") === -1) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}
