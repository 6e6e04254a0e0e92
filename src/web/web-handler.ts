/**
 * The homepage (docs/homepage.md): every path outside /api/ is a file of the web root. Read top to
 * bottom: the method (GET and HEAD), the path's own shape, the login of its folder (throttle first,
 * then the Basic credentials), the file as the file system resolves it (and the login of the folder
 * it really lies in, if that is higher), then the answer: an index file for a folder, a rendered
 * `.shtml`, or the bytes with their validators (304 when they still hold).
 */

import type * as http from "node:http";
import type { Throttle } from "../access/throttle.ts";
import type { Clock } from "../common/clock.ts";
import type { Logger } from "../common/log.ts";
import type { Device } from "../state/device.ts";
import { loggedPath, type Request } from "../http/send.ts";
import { ACCOUNT_OF, accountLevel, folderOf, levelOf, presentedCredentials, type Level } from "./basic-auth.ts";
import { escapeHtml, renderShtml } from "./ssi.ts";
import { contentTypeOf, INDEX_FILES, parseWebPath, readWebFile, WebRoot, type FileRead } from "./static-files.ts";

/** What the homepage needs; built once by createServer. */
export interface WebContext {
  readonly device: Device;
  readonly log: Logger;
  /** The keys' throttle: a wrong password is a wrong key. */
  readonly throttle: Throttle;
  readonly clock: Clock;
  /** The web root; undefined: no homepage (every page answers 404). */
  readonly wwwDir: string | undefined;
  /** Whether the server is stopping (answers then close their connections). */
  readonly closing: () => boolean;
}

/**
 * Every homepage answer carries these. The policy allows scripts and styles from the device itself
 * only (no inline script, no external asset), requests to the device only, and no framing.
 */
export const CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const SECURITY_HEADERS: readonly string[] = [
  "X-Content-Type-Options", "nosniff",
  "X-Frame-Options", "DENY",
  "Content-Security-Policy", CONTENT_SECURITY_POLICY,
  "Referrer-Policy", "no-referrer",
  "Cross-Origin-Resource-Policy", "same-origin",
];

const HTML = "text/html; charset=utf-8";
const ALLOW = "GET, HEAD";

/** Why a request did not get its file: the status and a sentence for the page. */
const REASONS = {
  400: ["Bad Request", "The address is malformed."],
  401: ["Unauthorized", "This folder needs its account's user name and password (or those of an account above it)."],
  404: ["Not Found", "There is no such page."],
  405: ["Method Not Allowed", "Pages are read with GET or HEAD only."],
  429: ["Too Many Requests", "Too many wrong passwords from this address. Wait, then try again."],
  500: ["Internal Server Error", "Something went wrong; the device's log says what."],
} as const;
type ErrorStatus = keyof typeof REASONS;

/** Serves the homepage of one server. */
export class WebHandler {
  /** When the server was built (process.uptime(), monotonic seconds; the `performance` global would load perf_hooks at every start): `uptime` counts from here. */
  private readonly startedAt = process.uptime();
  private root: WebRoot | undefined;
  private rootWarned = false;

  constructor(private readonly ctx: WebContext) {
    void this.webRoot();
  }

  /** Serves one request whose path (without the query) lies outside /api/. */
  async serve(req: http.IncomingMessage, res: http.ServerResponse, path: string): Promise<void> {
    try {
      await this.answer(req, res, path);
    } catch (error) {
      this.ctx.log.log("error", "internal error", { method: req.method, detail: error instanceof Error ? error.stack ?? error.message : String(error) });
      if (res.headersSent) res.destroy();
      else this.errorPage(req, res, 500);
    }
  }

  private async answer(req: http.IncomingMessage, res: http.ServerResponse, path: string): Promise<void> {
    if (req.method !== "GET" && req.method !== "HEAD") return this.errorPage(req, res, 405, ["Allow", ALLOW]);
    const parsed = parseWebPath(path);
    if (parsed === "bad") return this.errorPage(req, res, 400);
    if (parsed === "refused") return this.errorPage(req, res, 404);

    // The login before any look at the disk: without it, nothing is learnt of what a folder holds.
    const asked = levelOf(parsed.segments[0]);
    let account: Level = 0;
    if (asked > 0) {
      const login = this.login(req, res, asked);
      if (login === undefined) return;
      account = login;
    }
    const root = await this.webRoot();
    const resolved = root === undefined ? undefined : await root.resolve(parsed.segments);
    if (root === undefined || resolved === undefined) return this.errorPage(req, res, 404);
    // A symlink may lead into a higher folder than the path says: that folder's login applies.
    let level = Math.max(asked, levelOf(resolved.relative[0])) as Level;
    if (level > account) {
      const login = this.login(req, res, level);
      if (login === undefined) return;
      account = login;
    }

    let read = await readWebFile(root, resolved.real);
    let relative = resolved.relative;
    if (read.kind === "folder") {
      // "/ro" becomes "/ro/", so that the index page's relative links resolve inside the folder.
      if (!parsed.folder) return this.redirect(req, res, path + "/");
      read = { kind: "missing" };
      for (const index of INDEX_FILES) {
        const found = await root.resolve([...parsed.segments, index]);
        if (found === undefined) continue;
        read = await readWebFile(root, found.real);
        relative = found.relative;
        if (read.kind !== "missing") break;
      }
      level = Math.max(level, levelOf(relative[0])) as Level;
      if (read.kind === "file" && level > account) {
        const login = this.login(req, res, level);
        if (login === undefined) return;
        account = login;
      }
    } else if (parsed.folder) {
      return this.errorPage(req, res, 404); // "/index.html/"
    }
    if (read.kind === "too-large") {
      this.ctx.log.log("warn", "web file not served: over the size limit", { file: relative.join("/"), size: read.size });
      return this.errorPage(req, res, 404);
    }
    if (read.kind !== "file") return this.errorPage(req, res, 404);
    (req as Request).pair = account > 0 ? ACCOUNT_OF[folderOf(account) as "ro"] : "-";
    return this.file(req, res, root, read, relative, level);
  }

  /**
   * The login of a folder of `level`: the account level on success; otherwise the answer is sent
   * (429 while the address is blocked, 401 with a challenge) and undefined returned. A password that
   * matches no account counts as a wrong key; a right one of a lower account does not.
   */
  private login(req: http.IncomingMessage, res: http.ServerResponse, level: Level): Level | undefined {
    const { device, throttle, clock, log } = this.ctx;
    const address = req.socket.remoteAddress ?? "";
    const waitMs = throttle.blockedFor(address, clock());
    if (waitMs > 0) {
      this.errorPage(req, res, 429, ["Retry-After", String(Math.ceil(waitMs / 1000))]);
      return undefined;
    }
    const folder = folderOf(level) as string;
    const presented = presentedCredentials(req.rawHeaders);
    if (presented === "duplicated") {
      this.errorPage(req, res, 400);
      return undefined;
    }
    let account: Level = 0;
    if (presented.kind === "basic") account = accountLevel(device, presented.credentials);
    if (presented.kind !== "none" && account === 0) {
      throttle.recordFailure(address, clock());
      // Never the user name nor the password: the client, the folder, that is all.
      log.log("warn", "refused login", { event: "login-refused", client: address, folder });
    }
    if (account >= level) return account;
    this.errorPage(req, res, 401, ["WWW-Authenticate", `Basic realm="${realm(device, folder)}", charset="UTF-8"`]);
    return undefined;
  }

  private async file(req: http.IncomingMessage, res: http.ServerResponse, root: WebRoot, read: Extract<FileRead, { kind: "file" }>, relative: readonly string[], level: Level): Promise<void> {
    const name = relative[relative.length - 1] ?? "";
    const type = contentTypeOf(name);
    // The folders' pages are never stored; public files are, but checked again each time.
    const cache = level > 0 ? "no-store" : "no-cache";
    if (name.toLowerCase().endsWith(".shtml")) {
      const body = await renderShtml(
        { device: this.ctx.device, root, log: this.ctx.log, clock: this.ctx.clock, startedAt: this.startedAt, level, page: relative.join("/"), localAddress: req.socket.localAddress ?? "" },
        read.body,
        relative,
      );
      return this.send(req, res, 200, ["Content-Type", type, "Cache-Control", "no-store"], body);
    }
    const etag = `"${read.size.toString(16)}-${Math.floor(read.mtimeMs).toString(16)}-${read.ino.toString(16)}"`;
    const modified = new Date(Math.floor(read.mtimeMs / 1000) * 1000);
    const validators = ["ETag", etag, "Last-Modified", modified.toUTCString(), "Cache-Control", cache];
    if (notModified(req, etag, modified)) return this.send(req, res, 304, validators, undefined);
    return this.send(req, res, 200, ["Content-Type", type, ...validators], read.body);
  }

  private redirect(req: http.IncomingMessage, res: http.ServerResponse, location: string): void {
    const body = Buffer.from(page("301 Moved Permanently", `The page is at ${location}.`), "utf8");
    this.send(req, res, 301, ["Location", location, "Content-Type", HTML, "Cache-Control", "no-store"], body);
  }

  private errorPage(req: http.IncomingMessage, res: http.ServerResponse, status: ErrorStatus, extra: readonly string[] = []): void {
    const [title, text] = REASONS[status];
    const body = Buffer.from(page(`${status} ${title}`, text), "utf8");
    this.send(req, res, status, ["Content-Type", HTML, "Cache-Control", "no-store", ...extra], body);
  }

  /** Writes the answer (no body for HEAD and 304), then the request's log line. */
  private send(req: http.IncomingMessage, res: http.ServerResponse, status: number, headers: readonly string[], body: Buffer | undefined): void {
    const all = [...headers, ...SECURITY_HEADERS];
    if (body !== undefined) all.push("Content-Length", String(body.length));
    // A page request's body is never read: the connection cannot be reused after one.
    if (this.ctx.closing() || hasBody(req)) all.push("Connection", "close");
    res.writeHead(status, all);
    res.end(req.method === "HEAD" ? undefined : body);
    const log = this.ctx.log;
    if (log.request !== undefined) {
      const r = req as Request;
      log.request(req.socket.remoteAddress ?? "-", req.method ?? "-", loggedPath(req.url ?? ""), status, performance.now() - r.started, r.pair);
    }
  }

  /** The web root, resolved once it exists; a missing one is warned of once. */
  private async webRoot(): Promise<WebRoot | undefined> {
    if (this.root !== undefined || this.ctx.wwwDir === undefined) return this.root;
    this.root = await WebRoot.open(this.ctx.wwwDir, this.ctx.clock);
    if (this.root === undefined && !this.rootWarned) {
      this.rootWarned = true;
      this.ctx.log.log("warn", "web root not found: every page answers 404", { www: this.ctx.wwwDir });
    }
    return this.root;
  }
}

/** The realm of a folder: the device's name and the folder, in the characters a header may carry. */
export function realm(device: Device, folder: string): string {
  const doc = device.endpoints.get("properties")?.docs.committed as Record<string, unknown> | undefined;
  const name = typeof doc?.["name"] === "string" ? doc["name"] : "apikeyd";
  const safe = name.replace(/[^\x20-\x7e]/g, "?").replace(/["\\]/g, "'").slice(0, 64);
  return `${safe} ${folder}`;
}

/** If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2). */
function notModified(req: http.IncomingMessage, etag: string, modified: Date): boolean {
  const match = req.headers["if-none-match"];
  if (match !== undefined) {
    return match.split(",").some((tag) => {
      const t = tag.trim();
      return t === "*" || t === etag || t === `W/${etag}`;
    });
  }
  const since = req.headers["if-modified-since"];
  if (since === undefined) return false;
  const time = Date.parse(since);
  return !Number.isNaN(time) && modified.getTime() <= time;
}

function hasBody(req: http.IncomingMessage): boolean {
  const length = req.headers["content-length"];
  return req.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0");
}

/** A small page of the server's own (errors, redirects): no script, the shared style sheet. */
function page(title: string, text: string): string {
  return (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">' +
    `<title>${escapeHtml(title)}</title><link rel="stylesheet" href="/style.css"></head>\n` +
    `<body><main class="message"><h1>${escapeHtml(title)}</h1><p>${escapeHtml(text)}</p><p><a href="/">Home page</a></p></main></body></html>\n`
  );
}
