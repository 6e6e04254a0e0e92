// The life of a key pair (docs/api.md §8), through the real server with an injected clock that the
// tests move: label, enabled, expires, origins (IPv4, IPv6, CIDR, IPv4-mapped), the order of 16 and
// 17 after the keys, the guards of the apikeys pair, last use (memory, interval, clean stop),
// rotation with grace, confirm-or-revert (restarts, a keep-alive client), audit lines, and the
// previous keys never shown.

import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Client } from "undici";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { fingerprint } from "../src/access/keys.ts";
import { DEFAULT_THROTTLE } from "../src/access/throttle.ts";
import { createLogger } from "../src/common/log.ts";
import { call, cleanup, closeAgents, CONFIG_DIR, failure, ok, startServer, tempDir, until, type CallOptions, type StartOptions, type TestServer, withoutDetail } from "./helpers.ts";

afterEach(cleanup);
afterAll(closeAgents);

const T0 = Date.UTC(2030, 0, 1, 0, 0, 0); // 2030-01-01 00:00:00 UTC
const T0_S = T0 / 1000;
const MASTER = { rd: "rdKey2", wr: "wrKey2" };
const DATA = { rd: "rdKey7", wr: "wrKey7" };
const NEW = { rd: "Data-Rd-New-4kq9Xw2", wr: "Data-Wr-New-8Pz3Lm1" };

/** A clock the test moves; a server on it that ticks often; the log lines it wrote. */
async function lifeServer(options: StartOptions & { now?: { ms: number } } = {}): Promise<{ ts: TestServer; now: { ms: number }; lines: string[] }> {
  const now = options.now ?? { ms: T0 };
  const lines: string[] = [];
  const ts = await startServer({
    ...options,
    server: { clock: () => now.ms, log: createLogger("json", (line) => lines.push(line)), keyLifeTickMs: 10, ...options.server },
  });
  return { ts, now, lines };
}

/** A PUT; its answer's text without meta.detail (test/error-details.test.ts checks the details). */
const put = async (ts: { origin: string }, path: string, body: string | Record<string, unknown>, keys: CallOptions = MASTER): ReturnType<typeof call> => {
  const answer = await call(ts, "PUT", path, { ...keys, body });
  return { ...answer, text: withoutDetail(answer.text) };
};
const pairOf = async (ts: { origin: string }, n: number, keys: CallOptions = MASTER): Promise<Record<string, unknown>> =>
  (await call(ts, "GET", `/api/v1/apikeys/keys/${n}`, keys)).json?.data as Record<string, unknown>;
const status = async (ts: { origin: string }, method: string, path: string, options: CallOptions): Promise<[number, number | undefined]> => {
  const a = await call(ts, method, path, options);
  return [a.status, a.json?.meta.error];
};
const events = (lines: string[], event: string): Array<Record<string, unknown>> =>
  lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l["event"] === event);
const readState = async (ts: TestServer, file = "apikeys.json"): Promise<string> => readFile(join(ts.stateDir, file), "utf8");

describe("revision 1 of jApiKey", () => {
  it("has the new members before the type tags, factory values; MKC clients read name, rd and wr as before", async () => {
    const { ts } = await lifeServer();
    const pair = await pairOf(ts, 6);
    expect(Object.keys(pair)).toEqual(["name", "rd", "wr", "label", "enabled", "expires", "origins", "changed", "lastUsed", "lastUsedFrom", "graceUntil", "confirmUntil", "Json+typeName", "Json+typeRevision"]);
    expect(pair).toMatchObject({ name: "data", rd: "rdKey7", wr: "wrKey7", label: "", enabled: true, expires: "", origins: "", changed: 0, lastUsed: 0, graceUntil: 0, confirmUntil: 0, "Json+typeRevision": 1 });
    expect((await call(ts, "GET", "/api/v1/apikeys/keys/6/rd", MASTER)).text).toBe(ok("rdKey7"));
  });

  it("upgrades a revision-0 state file at start, adding members only and keeping every key", async () => {
    const stateDir = await tempDir();
    const factory = JSON.parse(await readFile(join(CONFIG_DIR, "apikeys.json"), "utf8")) as { keys: Array<Record<string, unknown>> };
    const old = { ...factory, keys: factory.keys.map((p, i) => ({ name: p["name"], rd: `field-rd-${i}`, wr: `field-wr-${i}`, "Json+typeName": "MkcJsonLib.jApiKey", "Json+typeRevision": 0 })) };
    await writeFile(join(stateDir, "apikeys.json"), JSON.stringify(old), { mode: 0o600 });
    const { ts } = await lifeServer({ stateDir });
    const onDisk = JSON.parse(await readState(ts)) as { keys: Array<Record<string, unknown>> };
    expect(onDisk.keys[6]).toEqual({ name: "data", rd: "field-rd-6", wr: "field-wr-6", label: "", enabled: true, expires: "", origins: "", changed: 0, lastUsed: 0, lastUsedFrom: "", graceUntil: 0, confirmUntil: 0, "Json+typeName": "MkcJsonLib.jApiKey", "Json+typeRevision": 1 });
    expect((await call(ts, "GET", "/api/v1/data/time", { rd: "field-rd-6" })).status).toBe(200);
  });
});

describe("value rules (error 8, nothing changed)", () => {
  it.each([
    ["label", "x".repeat(65)],
    ["label", "line\u0007bell"],
    ["expires", "2030-02-30 00:00:00"],
    ["expires", "2030-01-01T00:00:00"],
    ["expires", "2030-01-01 24:00:00"],
    ["origins", "10.0.0.0/33"],
    ["origins", "192.168.1.300"],
    ["origins", "fe80::1%eth0"],
    ["origins", "10.0.0.1,"],
    ["origins", "example.com"],
    ["enabled", "yes"],
  ])("%s=%j", async (member, value) => {
    const { ts } = await lifeServer();
    const before = await readState(ts);
    const a = await put(ts, "/api/v1/apikeys/keys/6", { [member]: value });
    expect(a.text).toBe(failure(8, "JSON_ERROR_INVALID_VALUE"));
    const form = await put(ts, "/api/v1/apikeys/keys/6", `${member}=${encodeURIComponent(value)}`);
    expect(form.text).toBe(failure(8, "JSON_ERROR_INVALID_VALUE"));
    expect(await readState(ts)).toBe(before);
  });

  it("accepts 64 characters of label, a real date, and lists of addresses and ranges", async () => {
    const { ts } = await lifeServer();
    const a = await put(ts, "/api/v1/apikeys/keys/6", { label: "é".repeat(64), expires: "2032-02-29 23:59:59", origins: "10.1.2.3, 192.168.0.0/16,::1,fd00::/8,::ffff:172.16.0.0/108" });
    expect(a.status).toBe(200);
    expect(a.json?.data).toMatchObject({ label: "é".repeat(64), expires: "2032-02-29 23:59:59" });
  });

  it("changed, lastUsed, lastUsedFrom, graceUntil and confirmUntil are read-only (6)", async () => {
    const { ts } = await lifeServer();
    for (const member of ["changed", "lastUsed", "lastUsedFrom", "graceUntil", "confirmUntil"]) {
      expect((await put(ts, "/api/v1/apikeys/keys/6", `${member}=1`)).text).toBe(failure(6, "JSON_ERROR_READ_ONLY"));
    }
  });
});

describe("enabled and expires (error 16)", () => {
  it("a disabled pair: the right key gets 16, a wrong key 3 (counted), the write key checked first", async () => {
    const { ts, lines } = await lifeServer({ server: { throttle: { ...DEFAULT_THROTTLE, maxFailures: 3 } } });
    expect((await put(ts, "/api/v1/apikeys/keys/6", "enabled=false")).status).toBe(200);
    expect(events(lines, "pair-disabled")).toEqual([expect.objectContaining({ pair: "data" })]);
    const from = { localAddress: "127.0.0.41" };
    expect(await status(ts, "GET", "/api/v1/data", { ...from, ...DATA })).toEqual([401, 16]);
    expect(await status(ts, "PUT", "/api/v1/data/entries/1/pin", { ...from, ...DATA, body: "pin=1" })).toEqual([401, 16]);
    expect(await status(ts, "PUT", "/api/v1/data/entries/1/pin", { ...from, rd: "rdKey7", wr: "wrong", body: "pin=1" })).toEqual([403, 4]);
    expect(await status(ts, "GET", "/api/v1/data", { ...from, rd: "guess" })).toEqual([401, 3]);
    expect(await status(ts, "GET", "/api/v1/data", { ...from, rd: "guess2" })).toEqual([401, 3]);
    // Three wrong keys: blocked, 16 or not.
    expect(await status(ts, "GET", "/api/v1/data", { ...from, ...DATA })).toEqual([429, 12]);
    expect((await put(ts, "/api/v1/apikeys/keys/6", "enabled=1")).status).toBe(200);
    expect(events(lines, "pair-enabled")).toHaveLength(1);
    expect(await status(ts, "GET", "/api/v1/data", DATA)).toEqual([200, 0]);
  });

  it("an empty key on a disabled pair opens nothing", async () => {
    const { ts } = await lifeServer();
    expect((await put(ts, "/api/v1/apikeys/keys/5", "rd=&wr=&enabled=false")).status).toBe(200);
    expect(await status(ts, "GET", "/api/v1/process", {})).toEqual([401, 16]);
    expect(await status(ts, "PUT", "/api/v1/process/name", { body: "name=x" })).toEqual([401, 16]);
  });

  it("from `expires` on, 16; one key-expired line; a later date opens again", async () => {
    const { ts, now, lines } = await lifeServer();
    expect((await put(ts, "/api/v1/apikeys/keys/6", "expires=2030-01-01+00%3A10%3A00")).status).toBe(200);
    now.ms = T0 + 10 * 60_000 - 1;
    expect(await status(ts, "GET", "/api/v1/data", DATA)).toEqual([200, 0]);
    now.ms = T0 + 10 * 60_000;
    expect(await status(ts, "GET", "/api/v1/data", DATA)).toEqual([401, 16]);
    await until("the expiry is logged", () => events(lines, "key-expired").length === 1);
    expect(events(lines, "key-expired")[0]).toMatchObject({ pair: "data", expires: "2030-01-01 00:10:00" });
    expect(await status(ts, "GET", "/api/v1/data", { rd: "guess" })).toEqual([401, 3]);
    expect((await put(ts, "/api/v1/apikeys/keys/6", { expires: "2031-01-01 00:00:00" })).status).toBe(200);
    expect(await status(ts, "GET", "/api/v1/data", DATA)).toEqual([200, 0]);
  });
});

describe("origins (error 17)", () => {
  it("IPv4 addresses and CIDR ranges; a wrong key from outside is still 3", async () => {
    const { ts } = await lifeServer();
    expect((await put(ts, "/api/v1/apikeys/keys/6", "origins=127.0.0.2,127.0.1.0/24")).status).toBe(200);
    expect(await status(ts, "GET", "/api/v1/data", { ...DATA, localAddress: "127.0.0.2" })).toEqual([200, 0]);
    expect(await status(ts, "GET", "/api/v1/data", { ...DATA, localAddress: "127.0.1.77" })).toEqual([200, 0]);
    expect(await status(ts, "GET", "/api/v1/data", { ...DATA, localAddress: "127.0.0.3" })).toEqual([403, 17]);
    expect(await status(ts, "PUT", "/api/v1/data/entries/1/pin", { ...DATA, localAddress: "127.0.0.3", body: "pin=1" })).toEqual([403, 17]);
    expect(await status(ts, "GET", "/api/v1/data", { rd: "guess", localAddress: "127.0.0.3" })).toEqual([401, 3]);
    expect(await status(ts, "GET", "/api/v1/data", { localAddress: "127.0.0.3" })).toEqual([401, 3]);
  });

  it("IPv6, and IPv4 clients of a dual-stack socket (::ffff:a.b.c.d) matched in their IPv4 form", async () => {
    const { ts } = await lifeServer({ host: "::" });
    const v4 = { origin: `http://127.0.0.1:${ts.port}` };
    const v6 = { origin: `http://[::1]:${ts.port}` };
    expect((await put(v4, "/api/v1/apikeys/keys/6", { origins: "::1/128, 127.0.0.5" })).status).toBe(200);
    expect(await status(v6, "GET", "/api/v1/data", DATA)).toEqual([200, 0]);
    expect(await status(v4, "GET", "/api/v1/data", { ...DATA, localAddress: "127.0.0.5" })).toEqual([200, 0]);
    expect(await status(v4, "GET", "/api/v1/data", { ...DATA, localAddress: "127.0.0.6" })).toEqual([403, 17]);
    expect((await pairOf(v4, 6)).lastUsedFrom).toBe("127.0.0.5");
    // A mapped range in the list is an IPv4 range.
    expect((await put(v4, "/api/v1/apikeys/keys/6", { origins: "::ffff:127.0.0.0/120" })).status).toBe(200);
    expect(await status(v4, "GET", "/api/v1/data", { ...DATA, localAddress: "127.0.0.6" })).toEqual([200, 0]);
    expect(await status(v6, "GET", "/api/v1/data", DATA)).toEqual([403, 17]);
    expect((await put(v4, "/api/v1/apikeys/keys/6", { origins: "fe80::/10" })).status).toBe(200);
    expect(await status(v6, "GET", "/api/v1/data", DATA)).toEqual([403, 17]);
  });

  it("an empty key with origins: anyone inside, 17 to anyone outside", async () => {
    const { ts } = await lifeServer();
    expect((await put(ts, "/api/v1/apikeys/keys/5", "rd=&origins=127.0.0.9")).status).toBe(200);
    expect(await status(ts, "GET", "/api/v1/process/name", { localAddress: "127.0.0.9" })).toEqual([200, 0]);
    expect(await status(ts, "GET", "/api/v1/process/name", { localAddress: "127.0.0.10" })).toEqual([403, 17]);
  });
});

describe("no single request locks key management away (error 8)", () => {
  it("the apikeys pair is never disabled or given an expiry over HTTP", async () => {
    const { ts } = await lifeServer();
    const before = await readState(ts);
    for (const body of ["enabled=false", "enabled=0", "expires=2031-01-01+00%3A00%3A00", "label=x&enabled=false"]) {
      expect((await put(ts, "/api/v1/apikeys/keys/1", body)).text).toBe(failure(8, "JSON_ERROR_INVALID_VALUE"));
    }
    expect((await put(ts, "/api/v1/apikeys/keys/1/enabled", "enabled=false")).text).toBe(failure(8, "JSON_ERROR_INVALID_VALUE"));
    expect(await readState(ts)).toBe(before);
    expect((await put(ts, "/api/v1/apikeys/keys/1", "enabled=true&expires=&label=master")).status).toBe(200);
  });

  it("its origins must keep the requesting client inside", async () => {
    const { ts } = await lifeServer();
    const from = (localAddress: string): CallOptions => ({ ...MASTER, localAddress });
    expect((await put(ts, "/api/v1/apikeys/keys/1", "origins=127.0.0.2", from("127.0.0.3"))).text).toBe(failure(8, "JSON_ERROR_INVALID_VALUE"));
    expect((await put(ts, "/api/v1/apikeys/keys/1", "origins=127.0.0.0/30", from("127.0.0.3"))).status).toBe(200);
    expect(await status(ts, "GET", "/api/v1/apikeys", from("127.0.0.4"))).toEqual([403, 17]);
    // Another pair's origins may exclude the client: it keeps key management.
    expect((await put(ts, "/api/v1/apikeys/keys/6", "origins=10.0.0.1", from("127.0.0.2"))).status).toBe(200);
  });
});

describe("last use", () => {
  it("is kept in memory and shown at once; written after --last-use-interval, never per request", async () => {
    const { ts, now } = await lifeServer();
    const before = await readState(ts);
    now.ms = T0 + 5_000;
    for (let i = 0; i < 20; i++) expect((await call(ts, "GET", "/api/v1/data/time", { ...DATA, localAddress: "127.0.0.21" })).status).toBe(200);
    expect(await pairOf(ts, 6)).toMatchObject({ lastUsed: T0_S + 5, lastUsedFrom: "127.0.0.21" });
    // Answers of apikeys are cached, yet follow a use from another address within the same second.
    expect((await call(ts, "GET", "/api/v1/data/time", { ...DATA, localAddress: "127.0.0.23" })).status).toBe(200);
    expect(await pairOf(ts, 6)).toMatchObject({ lastUsed: T0_S + 5, lastUsedFrom: "127.0.0.23" });
    await new Promise((resolve) => setTimeout(resolve, 100)); // ten ticks
    expect(await readState(ts)).toBe(before);
    // The interval counts from the first tick that saw a use to write (at T0 + 5 s).
    now.ms = T0 + 604_999;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await readState(ts)).toBe(before);
    now.ms = T0 + 605_000;
    await until("the use is written", async () => (JSON.parse(await readState(ts)) as { keys: Array<{ lastUsed: number }> }).keys[6]?.lastUsed === T0_S + 5);
  });

  it("is written at a clean stop and comes back after a restart", async () => {
    const { ts, now } = await lifeServer();
    now.ms = T0 + 7_000;
    expect((await call(ts, "GET", "/api/v1/properties/name", { rd: "rdKey1", localAddress: "127.0.0.22" })).status).toBe(200);
    await ts.stop();
    const onDisk = JSON.parse(await readState(ts)) as { keys: Array<Record<string, unknown>> };
    expect(onDisk.keys[0]).toMatchObject({ lastUsed: T0_S + 7, lastUsedFrom: "127.0.0.22" });
    const again = await lifeServer({ stateDir: ts.stateDir, now });
    expect(await pairOf(again.ts, 0)).toMatchObject({ lastUsed: T0_S + 7, lastUsedFrom: "127.0.0.22" });
  });
});

describe("rotation with grace", () => {
  it("the replaced keys keep opening until graceUntil, never shown, kept apart in previous.keys (600)", async () => {
    const { ts, now, lines } = await lifeServer();
    const a = await put(ts, "/api/v1/apikeys/keys/6", `rd=${NEW.rd}&wr=${NEW.wr}&grace=60`);
    expect(a.json?.data).toMatchObject({ rd: NEW.rd, wr: NEW.wr, changed: T0_S, graceUntil: T0_S + 60, confirmUntil: 0 });
    expect(a.text).not.toContain("rdKey7");
    expect((await call(ts, "GET", "/api/v1/apikeys", MASTER)).text).not.toContain("rdKey7");
    expect(await readState(ts)).not.toContain("rdKey7");
    expect(await readState(ts, "previous.keys")).toContain("rdKey7");
    expect((await stat(join(ts.stateDir, "previous.keys"))).mode & 0o777).toBe(0o600);
    expect(await status(ts, "GET", "/api/v1/data", DATA)).toEqual([200, 0]);
    expect(await status(ts, "GET", "/api/v1/data", { rd: NEW.rd })).toEqual([200, 0]);
    expect(await status(ts, "PUT", "/api/v1/data/entries/1/pin", { ...DATA, body: "pin=2" })).toEqual([200, 0]);
    expect(events(lines, "grace-started")).toEqual([expect.objectContaining({ pair: "data", until: T0_S + 60 })]);

    // A restart inside the grace keeps it.
    await ts.stop();
    const again = await lifeServer({ stateDir: ts.stateDir, now });
    now.ms = T0 + 59_999;
    expect(await status(again.ts, "GET", "/api/v1/data", DATA)).toEqual([200, 0]);
    now.ms = T0 + 60_000;
    expect(await status(again.ts, "GET", "/api/v1/data", DATA)).toEqual([401, 3]);
    expect(await status(again.ts, "GET", "/api/v1/data", { rd: NEW.rd })).toEqual([200, 0]);
    await until("the grace ends on disk", async () => (await pairOf(again.ts, 6)).graceUntil === 0);
    await until("the previous keys are forgotten", async () => !(await readFile(join(ts.stateDir, "previous.keys"), "utf8").catch(() => "")).includes("rdKey7"));
    expect(events(again.lines, "grace-ended")).toEqual([expect.objectContaining({ pair: "data" })]);
  });

  it("a later change ends the grace; grace and confirm take whole seconds in range, with rd or wr only", async () => {
    const { ts } = await lifeServer();
    expect((await put(ts, "/api/v1/apikeys/keys/6", `rd=${NEW.rd}&grace=3600`)).status).toBe(200);
    expect((await put(ts, "/api/v1/apikeys/keys/6", "rd=Third-Key-aa11bb22")).json?.data).toMatchObject({ graceUntil: 0 });
    expect(await status(ts, "GET", "/api/v1/data", DATA)).toEqual([401, 3]);
    expect(await status(ts, "GET", "/api/v1/data", { rd: NEW.rd })).toEqual([401, 3]);
    for (const body of ["rd=k1k1k1k1&grace=604801", "rd=k1k1k1k1&grace=-1", "rd=k1k1k1k1&grace=1.5", "rd=k1k1k1k1&confirm=9", "rd=k1k1k1k1&confirm=3601", "label=x&grace=10", "grace=10"]) {
      expect([body, (await put(ts, "/api/v1/apikeys/keys/6", body)).text]).toEqual([body, failure(8, "JSON_ERROR_INVALID_VALUE")]);
    }
    expect((await put(ts, "/api/v1/apikeys/keys/6", { rd: "k1k1k1k1", grace: "10" })).text).toBe(failure(8, "JSON_ERROR_INVALID_VALUE"));
    expect((await put(ts, "/api/v1/apikeys/keys/6/rd", "rd=k1k1k1k1&grace=10")).text).toBe(failure(9, "JSON_ERROR_BAD_REQUEST"));
    expect((await put(ts, "/api/v1/properties", "name=x&grace=10", { rd: "rdKey1", wr: "wrKey1" })).text).toBe(failure(7, "JSON_ERROR_UNKNOWN_MEMBER"));
    expect((await put(ts, "/api/v1/apikeys/keys/6", { rd: "k1k1k1k1", grace: 604800, confirm: 3600 })).status).toBe(200);
  });
});

describe("confirm or revert", () => {
  it("reverts at the deadline unless the new keys were presented, durably, with an audit line, also for a keep-alive client", async () => {
    const { ts, now, lines } = await lifeServer();
    const a = await put(ts, "/api/v1/apikeys/keys/6", `rd=${NEW.rd}&wr=${NEW.wr}&confirm=30`);
    expect(a.json?.data).toMatchObject({ rd: NEW.rd, confirmUntil: T0_S + 30, graceUntil: 0 });
    const client = new Client(ts.origin);
    try {
      // A read presents the new read key only: the new write key is still unconfirmed.
      expect((await call(ts, "GET", "/api/v1/data", { rd: NEW.rd, dispatcher: client })).status).toBe(200);
      expect(await status(ts, "GET", "/api/v1/data", DATA)).toEqual([401, 3]);
      now.ms = T0 + 30_000;
      // The same connection, the next request: the old keys are back.
      expect((await call(ts, "GET", "/api/v1/data", { rd: NEW.rd, dispatcher: client })).status).toBe(401);
      expect((await call(ts, "GET", "/api/v1/data", { ...DATA, dispatcher: client })).status).toBe(200);
    } finally {
      await client.close();
    }
    expect(await pairOf(ts, 6)).toMatchObject({ rd: "rdKey7", wr: "wrKey7", confirmUntil: 0, changed: T0_S + 30 });
    expect(JSON.parse(await readState(ts)).keys[6]).toMatchObject({ rd: "rdKey7", confirmUntil: 0 });
    const reverted = events(lines, "key-reverted");
    expect(reverted).toEqual([expect.objectContaining({ pair: "data", rd: fingerprint("rdKey7", ts.device.fingerprintSecret) })]);
    expect(lines.join("\n")).not.toContain(NEW.rd);
  });

  it("a request presenting the new keys confirms: they stay after the deadline", async () => {
    const { ts, now, lines } = await lifeServer();
    expect((await put(ts, "/api/v1/apikeys/keys/6", { rd: NEW.rd, wr: NEW.wr, confirm: 60 })).status).toBe(200);
    // The old keys no longer open (no grace asked), and do not confirm.
    expect(await status(ts, "PUT", "/api/v1/data/entries/1/pin", { ...DATA, body: "pin=3" })).toEqual([401, 3]);
    expect(await status(ts, "PUT", "/api/v1/data/entries/1/pin", { ...NEW, body: "pin=3" })).toEqual([200, 0]);
    expect(await pairOf(ts, 6)).toMatchObject({ confirmUntil: 0 });
    expect(events(lines, "key-confirmed")).toEqual([expect.objectContaining({ pair: "data" })]);
    now.ms = T0 + 3_600_000;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await status(ts, "GET", "/api/v1/data", { rd: NEW.rd })).toEqual([200, 0]);
    expect(events(lines, "key-reverted")).toEqual([]);
  });

  it("a change of the apikeys pair itself is confirmed on apikeys; a restart inside the window keeps the deadline", async () => {
    const { ts, now } = await lifeServer();
    const master = { rd: "Master-Rd-New-77aa", wr: "Master-Wr-New-88bb" };
    expect((await put(ts, "/api/v1/apikeys/keys/1", { ...master, confirm: 120 })).status).toBe(200);
    await ts.stop();
    now.ms = T0 + 60_000;
    const again = await lifeServer({ stateDir: ts.stateDir, now });
    expect(await status(again.ts, "GET", "/api/v1/apikeys/keys/1/confirmUntil", { rd: master.rd })).toEqual([200, 0]);
    now.ms = T0 + 120_000;
    expect(await status(again.ts, "GET", "/api/v1/apikeys/keys/1/confirmUntil", { rd: master.rd })).toEqual([401, 3]);
    expect((await pairOf(again.ts, 1, MASTER)).rd).toBe("rdKey2");
  });

  it("a deadline that passed while the device was off is applied at start", async () => {
    const { ts, now } = await lifeServer();
    expect((await put(ts, "/api/v1/apikeys/keys/6", `rd=${NEW.rd}&confirm=10&grace=5`)).status).toBe(200);
    await ts.stop();
    now.ms = T0 + 3_600_000;
    const again = await lifeServer({ stateDir: ts.stateDir, now });
    await until("reverted on disk", async () => (JSON.parse(await readState(again.ts)) as { keys: Array<{ rd: string }> }).keys[6]?.rd === "rdKey7");
    await until("the previous keys file is gone", async () => !(await stat(join(ts.stateDir, "previous.keys")).then(() => true, () => false)));
    expect(await status(again.ts, "GET", "/api/v1/data", DATA)).toEqual([200, 0]);
  });

  it("a later change ends a pending confirmation (the earlier change stays)", async () => {
    const { ts, now } = await lifeServer();
    expect((await put(ts, "/api/v1/apikeys/keys/6", `rd=${NEW.rd}&confirm=10`)).status).toBe(200);
    expect((await put(ts, "/api/v1/apikeys/keys/6", `wr=${NEW.wr}`)).json?.data).toMatchObject({ confirmUntil: 0 });
    now.ms = T0 + 60_000;
    expect(await status(ts, "PUT", "/api/v1/data/entries/1/pin", { ...NEW, body: "pin=4" })).toEqual([200, 0]);
  });
});
