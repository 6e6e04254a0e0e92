// String members (docs/api.md §4) refuse the characters that steer a terminal or reorder text, not only
// C0: C1 controls (U+0080-U+009F; U+009B is a one-character CSI for many terminals) and the bidi
// overrides and isolates (U+202A-U+202E, U+2066-U+2069, "Trojan Source"). Error 8, form and JSON, and
// the document, in memory and on disk, is left as it was.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { convertJson, convertText, INVALID, isValidValue } from "../src/state/schema.ts";
import { call, cleanup, closeAgents, failure, ok, startServer, withoutDetail } from "./helpers.ts";

afterEach(cleanup);
afterAll(closeAgents);

const STRING = { kind: "string" } as const;
const hex = (c: string): string => `U+${(c.codePointAt(0) as number).toString(16).toUpperCase().padStart(4, "0")}`;

const REFUSED = [
  ...["\u0000", "\u001b", "\u001f", "\u007f"], // C0 and DEL, refused before too
  ...["\u0080", "\u0085", "\u009b", "\u009d", "\u009f"], // C1
  ...["\u202a", "\u202b", "\u202c", "\u202d", "\u202e"], // embeddings and overrides
  ...["\u2066", "\u2067", "\u2068", "\u2069"], // isolates
];
const KEPT = ["\u00a0", "\u00e9", "\u00ff", "\u2029", "\u2065", "\u206a", "\u202f", "\u2122"];

describe("the string rule", () => {
  it.each(REFUSED.map((c) => [hex(c), c]))("refuses %s anywhere in the value", (_name, c) => {
    for (const value of [c, `plant${c}`, `${c}plant`, `pl${c}ant`]) {
      expect(isValidValue(STRING, value)).toBe(false);
      expect(convertText(STRING, value)).toBe(INVALID);
      expect(convertJson(STRING, value)).toBe(INVALID);
    }
  });

  it.each(KEPT.map((c) => [hex(c), c]))("still accepts %s (text, not a control)", (_name, c) => {
    expect(isValidValue(STRING, `plant ${c} 2`)).toBe(true);
  });
});

describe("a PUT with such a character", () => {
  const PATH = "/api/v1/properties/name";
  const KEYS = { rd: "rdKey1", wr: "wrKey1" };

  it.each([
    ["C1 CSI U+009B, form", "name=line%C2%9B2J", undefined],
    ["C1 NEL U+0085, form", "name=line%C2%852", undefined],
    ["RLO U+202E, form", "name=abc%E2%80%AEgpj.exe", undefined],
    ["RLI U+2067, form", "name=abc%E2%81%A7def", undefined],
    ["C1 CSI U+009B, JSON", undefined, { name: "line\u009b2J" }],
    ["LRE U+202A, JSON", undefined, { name: "a\u202ab" }],
    ["PDI U+2069, JSON", undefined, { name: "a\u2069b" }],
  ] as const)("%s: error 8, and the document is unchanged", async (_what, form, json) => {
    const ts = await startServer();
    const file = join(ts.stateDir, "properties.json");
    const before = await call(ts, "GET", "/api/v1/properties", KEYS);
    const onDisk = await readFile(file, "utf8");
    const body = form ?? (json as Record<string, unknown>);
    const answer = await call(ts, "PUT", "/api/v1/properties", { ...KEYS, body });
    expect(answer.status).toBe(400);
    expect(withoutDetail(answer.text)).toBe(failure(8, "JSON_ERROR_INVALID_VALUE"));
    expect((await call(ts, "GET", "/api/v1/properties", KEYS)).text).toBe(before.text);
    expect(await readFile(file, "utf8")).toBe(onDisk);
    // A leaf PUT is refused alike.
    expect(withoutDetail((await call(ts, "PUT", PATH, { ...KEYS, body })).text)).toBe(failure(8, "JSON_ERROR_INVALID_VALUE"));
    expect((await call(ts, "GET", PATH, { rd: KEYS.rd })).text).toBe(ok("eNetMini1"));
  });

  it("accepts text just outside those ranges (no-break space, é, U+206A)", async () => {
    const ts = await startServer();
    const answer = await call(ts, "PUT", "/api/v1/properties", { ...KEYS, body: "name=Pumpe%C2%A0%C3%A9%E2%81%AA" });
    expect(answer.status).toBe(200);
    expect((await call(ts, "GET", PATH, { rd: KEYS.rd })).text).toBe(ok("Pumpe\u00a0\u00e9\u206a"));
  });
});
