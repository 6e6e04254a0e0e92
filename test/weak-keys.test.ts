// Weak keys set over PUT or `keys set` (empty, a factory key, shorter than 16 characters) are stored,
// and warned about: a warn line naming pair and side (never the key) and, on the PUT's 200 answer, an
// Apikeyd-Warning header; the body stays the fixed success envelope.

import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../src/common/log.ts";
import { factoryKeysOf, MIN_KEY_LENGTH, weakKeyHeader, weakKeyWarnings } from "../src/access/weak-keys.ts";
import { runCli } from "./cli-harness.ts";
import { call, cleanup, closeAgents, ensureBuilt, ok, startServer, tempDir } from "./helpers.ts";

beforeAll(ensureBuilt);
afterEach(cleanup);
afterAll(closeAgents);

const FACTORY = factoryKeysOf({ keys: [{ name: "properties", rd: "rdKey1", wr: "wrKey1" }, { name: "data", rd: "", wr: "wrKey7" }] });
const STRONG = "Q7x-vR2m_Kp9LwZ4";

describe("weakKeyWarnings", () => {
  it("warns of an empty key, a factory key (of any pair) and a key under 16 characters; not of a strong one", () => {
    expect([...FACTORY].sort()).toEqual(["rdKey1", "wrKey1", "wrKey7"]);
    expect(weakKeyWarnings("data", "rd", "", FACTORY).map((w) => w.message)).toEqual(["data rd is empty: anyone may read"]);
    expect(weakKeyWarnings("data", "wr", "", FACTORY).map((w) => w.message)).toEqual(["data wr is empty: anyone may write"]);
    expect(weakKeyWarnings("data", "rd", "wrKey1", FACTORY).map((w) => w.reason)).toEqual(["factory"]);
    expect(weakKeyWarnings("data", "wr", "abcd", FACTORY).map((w) => w.message)).toEqual(["data wr is shorter than 16 characters"]);
    expect(weakKeyWarnings("data", "wr", "x".repeat(MIN_KEY_LENGTH - 1), FACTORY).map((w) => w.reason)).toEqual(["short"]);
    expect(weakKeyWarnings("data", "wr", "x".repeat(MIN_KEY_LENGTH), FACTORY)).toEqual([]);
    expect(weakKeyWarnings("data", "rd", STRONG, FACTORY)).toEqual([]);
  });

  it("never holds the key, and stays a valid header value whatever the pair is called", () => {
    for (const key of ["", "rdKey1", "abc", "short-key"]) {
      for (const w of weakKeyWarnings("name, with\r\nbreak\u202e", "rd", key, FACTORY)) {
        if (key !== "") expect(w.message).not.toContain(key);
        expect(w.message).toMatch(/^[\x20-\x7e]+$/);
        expect(w.message).not.toContain(",");
      }
    }
    const both = [...weakKeyWarnings("data", "rd", "a", FACTORY), ...weakKeyWarnings("data", "wr", "", FACTORY)];
    expect(weakKeyHeader(both)).toBe("data rd is shorter than 16 characters, data wr is empty: anyone may write");
  });
});

describe("a PUT that sets a weak key", () => {
  const MASTER = { rd: "rdKey2", wr: "wrKey2" };

  it("is stored and answered with the fixed envelope, an Apikeyd-Warning header and a warn line without the key", async () => {
    const lines: string[] = [];
    const ts = await startServer({ server: { log: createLogger("text", (line) => lines.push(line)) } });
    const form = await call(ts, "PUT", "/api/v1/apikeys/keys/6", { ...MASTER, body: "rd=Tiny-41&wr=wrKey3" });
    expect(form.status).toBe(200);
    expect(form.headers["apikeyd-warning"]).toBe("data rd is shorter than 16 characters, data wr is a factory key (published with every device)");
    expect(form.text).toMatch(/^\{"meta":\{"error":0,"message":"JSON_ERROR_NONE"\},"data":\{/);
    expect((await call(ts, "GET", "/api/v1/data/entries/0/pin", { rd: "Tiny-41" })).status).toBe(200);
    const json = await call(ts, "PUT", "/api/v1/apikeys/keys/0/rd", { ...MASTER, body: { rd: "" } });
    expect(json.status).toBe(200);
    expect(json.headers["apikeyd-warning"]).toBe("properties rd is empty: anyone may read");
    expect(json.text).toBe(ok(""));
    const warns = lines.filter((l) => l.includes("event=weak-key"));
    expect(warns).toEqual([
      expect.stringMatching(/WARN  data rd is shorter than 16 characters event=weak-key pair=data side=rd reason=short$/),
      expect.stringMatching(/WARN  data wr is a factory key \(published with every device\) event=weak-key pair=data side=wr reason=factory$/),
      expect.stringMatching(/WARN  properties rd is empty: anyone may read event=weak-key pair=properties side=rd reason=empty$/),
    ]);
    for (const line of lines) expect(line).not.toContain("Tiny-41");
  });

  it("a strong key gets no header and no warning", async () => {
    const lines: string[] = [];
    const ts = await startServer({ server: { log: createLogger("text", (line) => lines.push(line)) } });
    const answer = await call(ts, "PUT", "/api/v1/apikeys/keys/6", { ...MASTER, body: `rd=${STRONG}` });
    expect(answer.status).toBe(200);
    expect(answer.headers["apikeyd-warning"]).toBeUndefined();
    expect(lines.filter((l) => l.includes("weak-key"))).toEqual([]);
  });
});

describe("keys set", () => {
  it("prints the same warnings, and logs them without the key", async () => {
    const stateDir = await tempDir();
    const r = await runCli(["keys", "set", "data", "--rd=Tiny-41", "--wr=rdKey1", "--state-dir", stateDir]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("warning: data rd is shorter than 16 characters\n");
    expect(r.stderr).toContain("warning: data wr is a factory key (published with every device)\n");
    expect(r.stderr).toMatch(/WARN  data rd is shorter than 16 characters event=weak-key pair=data side=rd reason=short\n/);
    expect(r.stderr + r.stdout).not.toContain("Tiny-41");
    const strong = await runCli(["keys", "set", "data", `--rd=${STRONG}`, "--state-dir", stateDir]);
    expect(strong.stderr).not.toContain("warning");
  });
});
