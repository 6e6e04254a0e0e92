/** Bounded reading of a PUT body, and its two formats: form-encoded and a flat JSON object (docs/api.md §4). */

import type { IncomingMessage } from "node:http";
import { ApiError, ERRORS } from "./errors.ts";
import { isObject } from "../state/schema.ts";

/** A parsed body: member name to its raw value (text for forms, a JSON value for JSON). */
export interface Fields {
  readonly format: "form" | "json";
  readonly values: ReadonlyMap<string, unknown>;
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Reads the whole body, refusing (413) as soon as it is known to exceed `limit`: from
 * Content-Length before a byte is read, or while counting a chunked body.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > limit) {
    return Promise.reject(new ApiError(ERRORS.BODY_TOO_LARGE, tooLarge(limit)));
  }
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const fail = (error: ApiError): void => {
      req.removeListener("data", onData);
      req.removeListener("end", onEnd);
      reject(error);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) fail(new ApiError(ERRORS.BODY_TOO_LARGE, tooLarge(limit)));
      else chunks.push(chunk);
    };
    const onEnd = (): void => resolve(Buffer.concat(chunks, size));
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", () => fail(new ApiError(ERRORS.BAD_REQUEST, BODY_CUT)));
    req.on("close", () => {
      if (!req.complete) fail(new ApiError(ERRORS.BAD_REQUEST, BODY_CUT));
    });
  });
}

/** Which format a Content-Type names; a body sent without one is read as a form (what curl -d sends). */
export function bodyFormat(contentType: string | undefined): "form" | "json" {
  if (contentType === undefined) return "form";
  const mediaType = (contentType.split(";")[0] as string).trim().toLowerCase();
  if (mediaType === "application/x-www-form-urlencoded") return "form";
  if (mediaType === "application/json") return "json";
  throw new ApiError(ERRORS.UNSUPPORTED_MEDIA_TYPE, "send the body as application/x-www-form-urlencoded (curl -d) or application/json");
}

const BODY_CUT = "the body ended before the length it announced";
const tooLarge = (limit: number): string => `the body is over ${limit} bytes`;

/** Decodes and parses a body; empty, malformed or duplicated fields are a bad request (9). */
export function parseBody(format: "form" | "json", body: Buffer): Fields {
  let text: string;
  try {
    text = UTF8.decode(body);
  } catch {
    throw new ApiError(ERRORS.BAD_REQUEST, "the body is not valid UTF-8");
  }
  const values = format === "form" ? parseForm(text) : parseJsonObject(text);
  if (values.size === 0) throw new ApiError(ERRORS.BAD_REQUEST, "the body names no member: send member=value (form) or {\"member\": value} (JSON)");
  return { format, values };
}

/** `a=1&b=2`, decoded as browsers and curl encode it: `+` is a space, `%XX` a byte of UTF-8. */
function parseForm(text: string): Map<string, unknown> {
  const values = new Map<string, unknown>();
  if (text === "") return values;
  for (const pair of text.split("&")) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new ApiError(ERRORS.BAD_REQUEST, "a form field is not member=value");
    const name = decodeFormComponent(pair.slice(0, eq));
    const value = decodeFormComponent(pair.slice(eq + 1));
    if (name === "" || values.has(name)) throw new ApiError(ERRORS.BAD_REQUEST, name === "" ? "a form field has no member name" : "a member is named twice in the body");
    values.set(name, value);
  }
  return values;
}

function decodeFormComponent(raw: string): string {
  const spaced = raw.replace(/\+/g, " ");
  if (spaced.indexOf("%") === -1) return spaced;
  try {
    return decodeURIComponent(spaced);
  } catch {
    throw new ApiError(ERRORS.BAD_REQUEST, "a form field has a malformed %-escape (send + & = % as %2B %26 %3D %25)");
  }
}

/** A JSON object whose member names are unique (JSON.parse would silently keep the last). */
function parseJsonObject(text: string): Map<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ApiError(ERRORS.BAD_REQUEST, "the body is not valid JSON");
  }
  if (!isObject(parsed)) throw new ApiError(ERRORS.BAD_REQUEST, "a JSON body is one object: {\"member\": value}");
  const names = topLevelNames(text);
  if (names.length !== new Set(names).size) throw new ApiError(ERRORS.BAD_REQUEST, "a member is named twice in the body");
  return new Map(Object.entries(parsed));
}

/**
 * The member names of the outermost object of already-valid JSON text, duplicates included: the
 * strings at depth 1 that a colon follows.
 */
function topLevelNames(text: string): string[] {
  const names: string[] = [];
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") depth--;
    else if (c === '"') {
      const start = i;
      for (i++; text[i] !== '"'; i++) if (text[i] === "\\") i++;
      if (depth !== 1) continue;
      let j = i + 1;
      while (text[j] === " " || text[j] === "\t" || text[j] === "\n" || text[j] === "\r") j++;
      if (text[j] === ":") names.push(JSON.parse(text.slice(start, i + 1)) as string);
    }
  }
  return names;
}
