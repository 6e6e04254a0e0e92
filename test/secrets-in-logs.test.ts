// Nothing secret leaves the process except where the contract says: requests carrying distinctive
// keys (right, wrong, newly set), passwords and bodies, and a scan of every log line and every
// error answer for them. Key changes are logged by fingerprint. The start-up warnings of the built
// server name endpoints, never keys.

import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadFingerprintSecret } from "../src/access/fingerprint-secret.ts";
import { fingerprint } from "../src/access/keys.ts";
import { StartupError } from "../src/state/device.ts";
import { loadDevice } from "../src/state/load-device.ts";
import { CATALOGUE } from "../src/http/errors.ts";
import { createLogger, type LogFormat } from "../src/common/log.ts";
import { DEFAULT_THROTTLE } from "../src/access/throttle.ts";
import { killServers, startCli } from "./cli-harness.ts";
import { call, cleanup, closeAgents, copyConfig, ensureBuilt, failure, tempDir, startServer, until, type Answer, type CallOptions, withoutDetail } from "./helpers.ts";
import { RawClient } from "./raw-client.ts";

beforeAll(ensureBuilt);
afterEach(async () => {
  killServers();
  await cleanup();
});
afterAll(closeAgents);

const NEW_RD = "NewRead-7Hq2xZ";
const NEW_WR = "NewWrite-Kp9Lm3";
const WRONG = "Wrong-Guess-Qz81";
const LONG_WRONG = `Long-Guess-${"q".repeat(100)}`;
const PASSWORD = "Pa55-Word-Vx47";
const BODY = "Body-Marker-Jw36";
const FACTORY = ["rdKey1", "wrKey1", "rdKey2", "wrKey2", "rdKey3", "wrKey3", "rdKey4", "wrKey4", "rdKey5", "wrKey5", "rdKey6", "wrKey6", "rdKey7", "wrKey7"];
const SECRETS = [NEW_RD, NEW_WR, WRONG, LONG_WRONG.slice(0, 20), PASSWORD, BODY, "pass_ro", ...FACTORY];

/** Every secret found in `text`. */
const leaks = (text: string): string[] => SECRETS.filter((s) => text.includes(s));

/** A client that keeps every answer, to scan them all afterwards. */
function recording(ts: { origin: string }): { answers: Answer[]; send: (method: string, path: string, options?: CallOptions) => Promise<Answer> } {
  const answers: Answer[] = [];
  const send = async (method: string, path: string, options: CallOptions = {}): Promise<Answer> => {
    const answer = await call(ts, method, path, options);
    answers.push(answer);
    return answer;
  };
  return { answers, send };
}

describe.each(["text", "json"] as LogFormat[])("the %s log and the error answers", (format) => {
  it("hold no key, password or body, whatever the requests carried", async () => {
    const lines: string[] = [];
    let clockBroken = false;
    const ts = await startServer({
      server: {
        log: createLogger(format, (line) => lines.push(line), { requests: true }),
        clock: () => {
          if (clockBroken) throw new Error("clock unreadable");
          return Date.now();
        },
      },
    });
    const { answers, send } = recording(ts);
    const MASTER = { rd: "rdKey2", wr: "wrKey2" };

    // New keys, set as a form and as JSON: the log gets their fingerprints.
    expect((await send("PUT", "/api/v1/apikeys/keys/0", { ...MASTER, body: `rd=${NEW_RD}` })).status).toBe(200);
    expect((await send("PUT", "/api/v1/apikeys/keys/0", { ...MASTER, body: { wr: NEW_WR } })).status).toBe(200);
    expect((await send("GET", "/api/v1/properties/name", { rd: NEW_RD })).status).toBe(200);
    expect((await send("PUT", "/api/v1/properties/name", { rd: NEW_RD, wr: NEW_WR, body: "name=ok" })).status).toBe(200);
    // Wrong keys of every kind: the old key, a guess, a long guess, a right read key with a wrong write key.
    await send("GET", "/api/v1/properties", { rd: "rdKey1" });
    await send("GET", "/api/v1/properties", { rd: WRONG });
    await send("GET", "/api/v1/httpro", { rd: LONG_WRONG });
    await send("PUT", "/api/v1/properties", { rd: NEW_RD, wr: WRONG, body: `name=${BODY}` });
    await send("GET", `/api/v1/device?ApiRdKey=${WRONG}&pass=${PASSWORD}`);
    await send("GET", "/api/v1/properties", { rd: WRONG, headers: { "X-Forwarded-For": WRONG } });
    // A password, and bodies refused at every step.
    expect((await send("PUT", "/api/v1/httpro/pass", { rd: "rdKey3", wr: "wrKey3", body: `pass=${PASSWORD}` })).status).toBe(200);
    await send("PUT", "/api/v1/properties", { rd: NEW_RD, wr: NEW_WR, body: `name=${BODY}&${"x".repeat(5_000)}` });
    await send("PUT", "/api/v1/properties", { rd: NEW_RD, wr: NEW_WR, body: `name=${BODY}`, contentType: "text/plain" });
    await send("PUT", "/api/v1/properties", { rd: NEW_RD, wr: NEW_WR, body: `name=${BODY}&name=${BODY}` });
    await send("PUT", "/api/v1/properties", { rd: NEW_RD, wr: NEW_WR, body: `${BODY}=1` });
    await send("PUT", "/api/v1/properties/mqtt", { rd: NEW_RD, wr: NEW_WR, body: { port: BODY, pass: PASSWORD } });
    await send("PUT", "/api/v1/properties/mqtt", { rd: NEW_RD, wr: NEW_WR, body: `{"pass":"${PASSWORD}",`, contentType: "application/json" });
    await send("PUT", "/api/v1/apikeys/keys/1", { rd: "rdKey2", wr: "wrKey2", body: `rd=${BODY} x` });
    // An internal failure in the middle of a PUT: its detail goes to the log, the body does not.
    clockBroken = true;
    expect((await send("PUT", "/api/v1/data/entries/1", { rd: "rdKey7", wr: "wrKey7", body: `pin=0.25&${BODY}=${PASSWORD}` })).status).toBe(500);
    clockBroken = false;
    // Guessing until blocked, from another address.
    for (let i = 0; i <= DEFAULT_THROTTLE.maxFailures; i++) await send("GET", "/api/v1/httpro", { rd: `${WRONG}${i}`, localAddress: "127.0.0.61" });
    expect(answers.at(-1)?.status).toBe(429);
    // Requests the parser refuses, with keys in them.
    for (const bytes of [
      `GET /api/v1/httpro HTTP/1.1\r\nHost: d\r\nApiRdKey: ${WRONG}\r\n ${PASSWORD}\r\n\r\n`,
      `PUT /api/v1/httpro/pass HTTP/1.1\r\nHost: d\r\nApiRdKey: rdKey3\r\nApiWrKey: wrKey3\r\nContent-Length: -1\r\n\r\npass=${PASSWORD}`,
      `GET /api/v1/httpro HTTP/1.1\r\nHost: d\r\nApiRdKey: ${WRONG}\r\nApiRdKey: rdKey3\r\n\r\n`,
      `GET /api/v1/httpro HTTP/1.1\r\nHost: d\r\nX-Filler: ${"f".repeat(9_000)}\r\nApiRdKey: ${WRONG}\r\n\r\n`,
    ]) {
      const client = new RawClient(ts.port).send(bytes);
      answers.push({ ...(await client.next()), json: undefined });
      client.destroy();
    }

    // Every refusal is the catalogue envelope, and its detail (scanned below with every answer) holds no secret.
    const failures = answers.filter((a) => a.status >= 400);
    expect(failures.length).toBeGreaterThanOrEqual(20);
    for (const a of failures) {
      const entry = CATALOGUE.find((e) => e.status === a.status && withoutDetail(a.text) === failure(e.code, e.message));
      expect(entry, a.text).toBeDefined();
    }
    expect(failures.filter((a) => JSON.parse(a.text).meta.detail !== undefined).length).toBeGreaterThanOrEqual(15);
    expect(failures.filter((a) => leaks(a.text).length > 0).map((a) => a.text)).toEqual([]);
    // No line carries a secret; key changes carry fingerprints; refusals are audited.
    expect(lines.filter((l) => leaks(l).length > 0)).toEqual([]);
    const text = lines.join("\n");
    expect(text).toContain(fingerprint(NEW_RD, ts.device.fingerprintSecret));
    expect(text).toContain(fingerprint(NEW_WR, ts.device.fingerprintSecret));
    expect(lines.filter((l) => l.includes("key-refused")).length).toBeGreaterThanOrEqual(5);
    expect(lines.some((l) => l.includes("internal error"))).toBe(true);
    if (format === "json") for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow();
  });
});

describe("the life of a pair (docs/api.md §8): grace and confirm", () => {
  it("shows no key a grace keeps in any answer, no key in any log line, and no key in any state file but apikeys.json and previous.keys", async () => {
    const lines: string[] = [];
    const now = { ms: Date.UTC(2030, 0, 1) };
    const ts = await startServer({ server: { log: createLogger("json", (line) => lines.push(line)), clock: () => now.ms, keyLifeTickMs: 10 } });
    const { answers, send } = recording(ts);
    const MASTER = { rd: "rdKey2", wr: "wrKey2" };
    // data rotated with a grace, process with a confirmation that nothing confirms, properties with both.
    expect((await send("PUT", "/api/v1/apikeys/keys/6", { ...MASTER, body: `rd=${NEW_RD}&wr=${NEW_WR}&grace=600` })).status).toBe(200);
    expect((await send("PUT", "/api/v1/apikeys/keys/5", { ...MASTER, body: { rd: `${NEW_RD}-p`, wr: `${NEW_WR}-p`, confirm: 60 } })).status).toBe(200);
    expect((await send("PUT", "/api/v1/apikeys/keys/0", { ...MASTER, body: `rd=${NEW_RD}-q&grace=600&confirm=60&label=${PASSWORD}` })).status).toBe(200);
    for (const path of ["/api/v1/apikeys", "/api/v1/apikeys/keys/6", "/api/v1/apikeys/keys/5", "/api/v1/apikeys/keys/0"]) await send("GET", path, MASTER);
    expect((await send("GET", "/api/v1/data", { rd: "rdKey7" })).status).toBe(200); // a grace key
    await send("GET", "/api/v1/data", { rd: WRONG });
    const files = await readdir(ts.stateDir);
    for (const name of files.filter((f) => f !== "apikeys.json" && f !== "previous.keys" && f !== "fingerprint.key")) {
      const text = await readFile(join(ts.stateDir, name), "utf8");
      // Passwords live in their accounts' files; keys in none of these.
      expect([name, [...FACTORY, NEW_RD, NEW_WR].filter((k) => text.includes(k))]).toEqual([name, []]);
    }
    // The grace keys (the factory keys of data, process and properties) are only in previous.keys.
    const apikeysFile = await readFile(join(ts.stateDir, "apikeys.json"), "utf8");
    for (const old of ["rdKey7", "wrKey7", "rdKey6", "wrKey6", "rdKey1"]) {
      expect(apikeysFile).not.toContain(`"${old}"`);
      for (const a of answers) expect(a.text).not.toContain(old);
    }
    // The deadline passes: process and properties revert.
    now.ms += 60_000;
    await until("reverted", () => lines.filter((l) => l.includes("key-reverted")).length === 2);
    await ts.stop();
    expect(lines.filter((l) => leaks(l).length > 0 || l.includes(NEW_RD) || l.includes(NEW_WR))).toEqual([]);
    expect(lines.some((l) => l.includes("grace-started"))).toBe(true);
  });
});

describe("the built server's log", () => {
  it("warns at start-up of factory keys naming the endpoints, never the keys; key changes appear as fingerprints", async () => {
    const stateDir = await tempDir();
    const server = await startCli(["--state-dir", stateDir]);
    await server.waitForLog(/still use factory keys/);
    const warning = server.log().split("\n").find((l) => l.includes("still use factory keys")) ?? "";
    expect(warning).toContain("WARN");
    expect(warning).toMatch(/endpoints=properties,apikeys,httpro,httprw,httpsu,process,data$/);
    expect(server.log()).not.toContain("open to anyone");

    const ts = { origin: server.origin };
    expect((await call(ts, "PUT", "/api/v1/apikeys/keys/6", { rd: "rdKey2", wr: "wrKey2", body: `rd=${NEW_RD}` })).status).toBe(200);
    expect((await call(ts, "GET", "/api/v1/data", { rd: WRONG })).status).toBe(401);
    expect((await call(ts, "PUT", "/api/v1/httpsu/pass", { rd: "rdKey5", wr: "wrKey5", body: `pass=${PASSWORD}` })).status).toBe(200);
    await server.waitForLog(new RegExp(`fingerprint=${fingerprint(NEW_RD, await loadFingerprintSecret(stateDir))}`));
    expect(await server.stop()).toBe(0);
    expect(server.log().split("\n").filter((l) => leaks(l).length > 0)).toEqual([]);
  });

  it("names open endpoints and those still on a factory key, in the json format too", async () => {
    const stateDir = await tempDir();
    const first = await startCli(["--state-dir", stateDir]);
    expect(await first.stop()).toBe(0);
    // Provisioned by hand: data open (empty keys), process still on its factory write key.
    const file = join(stateDir, "apikeys.json");
    const doc = JSON.parse(await readFile(file, "utf8")) as { keys: Array<{ name: string; rd: string; wr: string }> };
    for (const pair of doc.keys) {
      pair.rd = pair.name === "data" ? "" : `${NEW_RD}-${pair.name}`;
      pair.wr = pair.name === "data" ? "" : pair.name === "process" ? "wrKey6" : `${NEW_WR}-${pair.name}`;
    }
    await writeFile(file, JSON.stringify(doc, null, 2) + "\n");
    const server = await startCli(["--state-dir", stateDir, "--log-format", "json"]);
    const lines = server.log().trimEnd().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    const warnings = lines.filter((l) => l["level"] === "warn");
    expect(warnings.map((w) => w["endpoints"])).toEqual(["data", "process"]);
    expect(String(warnings[0]?.["msg"])).toContain("open to anyone");
    expect(String(warnings[1]?.["msg"])).toContain("factory keys");
    expect(await server.stop()).toBe(0);
    expect(leaks(server.log())).toEqual([]);
  });

  it("a broken config file is reported by position, never by the text around it", async () => {
    const configDir = await copyConfig();
    const file = join(configDir, "apikeys.json");
    // Node 20's JSON.parse quotes the text around the fault (..."rd": rdKey1, "... is not valid JSON).
    await writeFile(file, (await readFile(file, "utf8")).replace('"rdKey1"', "rdKey1"));
    const error = await loadDevice({ configDir, stateDir: await tempDir() }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StartupError);
    expect((error as Error).message).toMatch(/apikeys\.json: not valid JSON/);
    expect(leaks((error as Error).message)).toEqual([]);
  });
});
