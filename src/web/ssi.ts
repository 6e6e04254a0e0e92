/**
 * Server-side includes in `.shtml` files (docs/homepage.md, the MKC convention):
 * `<!--#echo var="NAME" -->` and `<!--#include file="PATH" -->`. Every echoed value is HTML-escaped.
 * A REST path is read without keys, within the rule of echo-rules.ts for the page's folder. An
 * include stays inside the web root, never reaches into a folder above the page's, and nests at
 * most MAX_INCLUDE_DEPTH deep; the whole page is bounded by MAX_PAGE_BYTES.
 */

import type { Clock } from "../common/clock.ts";
import type { Logger } from "../common/log.ts";
import { APIKEYS_ENDPOINT, type Device } from "../state/device.ts";
import { decodeSegments, select } from "../state/documents.ts";
import { levelOf, type Level } from "./basic-auth.ts";
import { echoAllowed } from "./echo-rules.ts";
import { readWebFile, type WebRoot } from "./static-files.ts";

declare const APIKEYD_VERSION: string | undefined;
/** Set by the build from package.json (as in main.ts). */
export const APP_VERSION = typeof APIKEYD_VERSION === "string" ? APIKEYD_VERSION : "0.0.0-dev";
export const APP_NAME = "apikeyd";

/** Includes nest at most this deep (a page that includes itself stops here). */
export const MAX_INCLUDE_DEPTH = 4;
/** A page with its includes is cut off here. */
export const MAX_PAGE_BYTES = 2 * 1024 * 1024;

const REST_PREFIX = "/api/v1/";
const DIRECTIVE = /<!--#([a-z]+)\s+([a-z]+)="([^"]*)"\s*-->/g;

/** What rendering a page needs. */
export interface SsiContext {
  readonly device: Device;
  readonly root: WebRoot;
  readonly log: Logger;
  readonly clock: Clock;
  /** When the server started, in process.uptime() seconds (monotonic: uptime does not jump with the wall clock). */
  readonly startedAt: number;
  /** The page's folder level: the echo rule and the includes' limit. */
  readonly level: Level;
  /** The page's path under the root, for log lines. */
  readonly page: string;
  /** The address the request came in on (`ipaddr`). */
  readonly localAddress: string;
}

/** HTML-escapes text for element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Renders a `.shtml` file whose real path under the root is `relative`. */
export async function renderShtml(ctx: SsiContext, body: Buffer, relative: readonly string[]): Promise<Buffer> {
  const budget = { left: MAX_PAGE_BYTES };
  let page = await render(ctx, body.toString("utf8"), relative, 0, budget);
  if (budget.left < 0) {
    warn(ctx, "ssi page cut off: over the size limit", { limit: MAX_PAGE_BYTES });
    page = page.slice(0, MAX_PAGE_BYTES);
  }
  return Buffer.from(page, "utf8");
}

/** Renders text; every character it adds is taken from the budget (an include's, by the include). */
async function render(ctx: SsiContext, text: string, relative: readonly string[], depth: number, budget: { left: number }): Promise<string> {
  let out = "";
  let last = 0;
  for (const match of text.matchAll(DIRECTIVE)) {
    if (budget.left < 0) return out;
    const literal = text.slice(last, match.index);
    out += literal;
    budget.left -= literal.length;
    last = (match.index ?? 0) + match[0].length;
    const [, directive, attribute, value = ""] = match;
    if (directive === "echo" && attribute === "var") {
      const piece = escapeHtml(echo(ctx, value));
      out += piece;
      budget.left -= piece.length;
    } else if (directive === "include" && attribute === "file") {
      out += await include(ctx, value, relative, depth, budget);
    } else {
      warn(ctx, "ssi directive not supported", { directive: `${directive} ${attribute}` });
    }
  }
  const tail = text.slice(last);
  budget.left -= tail.length;
  return out + tail;
}

function warn(ctx: SsiContext, message: string, fields: Record<string, string | number> = {}): void {
  ctx.log.log("warn", message, { event: "ssi", page: ctx.page, ...fields });
}

/** The value of a variable or REST path, as text (before escaping). */
function echo(ctx: SsiContext, name: string): string {
  if (name.startsWith(REST_PREFIX)) return echoRest(ctx, name);
  switch (name) {
    case "name": {
      const value = select(ctx.device.endpoints.get("properties")?.docs.committed, ["name"])?.value;
      return typeof value === "string" ? value : "";
    }
    case "time":
      return new Date(ctx.clock()).toISOString().slice(0, 19).replace("T", " ") + " UTC";
    case "uptime":
      return formatUptime((process.uptime() - ctx.startedAt) * 1000);
    case "macaddress": {
      const value = select(ctx.device.endpoints.get("device")?.docs.committed, ["0", "address"])?.value;
      return typeof value === "string" ? formatMac(value) : "";
    }
    case "appname":
      return APP_NAME;
    case "appversion":
      return APP_VERSION;
    case "ipaddr":
      return ctx.localAddress.startsWith("::ffff:") ? ctx.localAddress.slice(7) : ctx.localAddress;
    default:
      warn(ctx, "ssi variable unknown", { variable: name.length > 64 ? name.slice(0, 64) + "..." : name });
      return "";
  }
}

function echoRest(ctx: SsiContext, path: string): string {
  const segments = decodeSegments(path.slice(REST_PREFIX.length));
  if (segments === null || segments.length === 0) {
    warn(ctx, "ssi echo of a malformed REST path");
    return "";
  }
  const verdict = echoAllowed(ctx.level, segments, ctx.device);
  // The path names endpoints, members and indexes; never a value. The value is not echoed.
  if (!verdict.allowed) {
    warn(ctx, "ssi echo refused", { path: path.length > 128 ? path.slice(0, 128) + "..." : path, reason: verdict.reason });
    return "";
  }
  const [endpoint, ...members] = segments;
  const committed = ctx.device.endpoints.get(endpoint as string)?.docs.committed;
  // apikeys as a GET shows it: a sealed device's keys are `sealed:<fingerprint>` (docs/api.md §9), never their digests.
  const selection = select(endpoint === APIKEYS_ENDPOINT && committed !== undefined ? ctx.device.keyLife.live(committed) : committed, members);
  if (selection === undefined) return "";
  const value = selection.value;
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** "3 d 04:05:06", or "04:05:06" under a day. */
export function formatUptime(ms: number): string {
  const total = Math.max(0, Math.floor(ms / 1000));
  const days = Math.floor(total / 86_400);
  const hms = [Math.floor(total / 3600) % 24, Math.floor(total / 60) % 60, total % 60].map((n) => String(n).padStart(2, "0")).join(":");
  return days > 0 ? `${days} d ${hms}` : hms;
}

/** "004082ABCDEF" as "00:40:82:AB:CD:EF"; anything else as it is. */
export function formatMac(address: string): string {
  return /^[0-9A-Fa-f]{12}$/.test(address) ? (address.toUpperCase().match(/../g) as string[]).join(":") : address;
}

async function include(ctx: SsiContext, file: string, relative: readonly string[], depth: number, budget: { left: number }): Promise<string> {
  const shown = file.length > 128 ? file.slice(0, 128) + "..." : file;
  if (depth >= MAX_INCLUDE_DEPTH) {
    warn(ctx, "ssi include refused: nested too deep", { file: shown, limit: MAX_INCLUDE_DEPTH });
    return "";
  }
  const segments = includeSegments(file, relative.slice(0, -1));
  const resolved = segments === undefined ? undefined : await ctx.root.resolve(segments);
  if (resolved === undefined) {
    warn(ctx, "ssi include refused: not a file inside the web root", { file: shown });
    return "";
  }
  if (levelOf(resolved.relative.length > 1 ? resolved.relative[0] : undefined) > ctx.level) {
    warn(ctx, "ssi include refused: the file lies in a folder above the page's", { file: shown });
    return "";
  }
  const read = await readWebFile(ctx.root, resolved.real);
  if (read.kind !== "file") {
    warn(ctx, "ssi include refused: not a file inside the web root", { file: shown });
    return "";
  }
  const text = read.body.toString("utf8");
  const name = resolved.relative[resolved.relative.length - 1] ?? "";
  if (name.toLowerCase().endsWith(".shtml")) return render(ctx, text, resolved.relative, depth + 1, budget);
  budget.left -= text.length;
  return text;
}

/**
 * The segments of an include's path: relative to the including file's folder, or to the root when
 * it starts with "/". ".." may climb, never above the root; "." is skipped; any other segment
 * starting with a dot, an empty segment, a backslash or NUL refuses the include.
 */
function includeSegments(file: string, folder: readonly string[]): string[] | undefined {
  const out = file.startsWith("/") ? [] : [...folder];
  const parts = (file.startsWith("/") ? file.slice(1) : file).split("/");
  for (const part of parts) {
    if (part === ".") continue;
    if (part === "..") {
      if (out.length === 0) return undefined;
      out.pop();
      continue;
    }
    if (part === "" || part.startsWith(".") || /[\\\0]/.test(part)) return undefined;
    out.push(part);
  }
  return out.length === 0 ? undefined : out;
}
