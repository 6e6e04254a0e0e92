// Sealed keys (docs/api.md §9), through the real server on a clock the test moves: revision 1 of
// jApiKeys and the upgrade of revision 0, sealing with keys current and in grace, every read path,
// `keys show`, the logs (text and JSON) and the state files holding no key, rd=generate/wr=generate
// (at once, on a keep-alive connection opened before), a restart, unsealing refused, the 24-character
// rule, confirm-or-revert while sealed, a crash between the two files of the sealing, the loader's
// refusals, and `reset --keys-only` back to the factory.

import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Client } from "undici";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { fingerprint, keyMatches, keysOf, sealKey, sealSalt } from "../src/access/keys.ts";
import { createLogger, type LogFormat } from "../src/common/log.ts";
import { runCli } from "./cli-harness.ts";
import { call, cleanup, closeAgents, CONFIG_DIR, copyConfig, ensureBuilt, failure, ok, startServer, tempDir, until, type Answer, type CallOptions, type StartOptions, type TestServer } from "./helpers.ts";

beforeAll(ensureBuilt);
afterEach(cleanup);
afterAll(closeAgents);

const T0 = Date.UTC(2030, 0, 1, 0, 0, 0);
const T0_S = T0 / 1000;
const MASTER = { rd: "rdKey2", wr: "wrKey2" };
const FACTORY = ["rdKey1", "wrKey1", "rdKey2", "wrKey2", "rdKey3", "wrKey3", "rdKey4", "wrKey4", "rdKey5", "wrKey5", "rdKey6", "wrKey6", "rdKey7", "wrKey7"];
const DATA_RD = "Data-Read-Key-Sealed-0001";
const DATA_WR = "Data-Write-Key-Sealed-002";

/** A server on a clock the test moves, logging in `format`, every line kept. */
async function sealedServer(options: StartOptions & { now?: { ms: number }; format?: LogFormat } = {}): Promise<{ ts: TestServer; now: { ms: number }; lines: string[] }> {
  const now = options.now ?? { ms: T0 };
  const lines: string[] = [];
  const ts = await startServer({
    ...options,
    server: { clock: () => now.ms, log: createLogger(options.format ?? "json", (line) => lines.push(line)), keyLifeTickMs: 10, ...options.server },
  });
  return { ts, now, lines };
}

const put = (ts: { origin: string }, path: string, body: string | Record<string, unknown>, keys: CallOptions = MASTER): Promise<Answer> => call(ts, "PUT", path, { ...keys, body });
const get = (ts: { origin: string }, path: string, keys: CallOptions = MASTER): Promise<Answer> => call(ts, "GET", path, keys);
const seal = async (ts: { origin: string }, keys: CallOptions = MASTER): Promise<Answer> => {
  const a = await put(ts, "/api/v1/apikeys", "sealed=true", keys);
  expect(a.status).toBe(200);
  return a;
};
const fp = (ts: TestServer, key: string): string => `sealed:${fingerprint(key, ts.device.fingerprintSecret)}`;
const stateFiles = async (ts: TestServer): Promise<string> => {
  let all = "";
  for (const name of await readdir(ts.stateDir)) if (name !== "fingerprint.key") all += await readFile(join(ts.stateDir, name), "utf8").catch(() => "");
  return all;
};
const events = (lines: string[], event: string): Array<Record<string, unknown>> =>
  lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l["event"] === event);

describe("revision 1 of jApiKeys", () => {
  it("has sealed (false) before its type tags; a revision-0 state file gains it at start, keys kept", async () => {
    const { ts } = await sealedServer();
    const doc = (await get(ts, "/api/v1/apikeys")).json?.data as Record<string, unknown>;
    expect(Object.keys(doc)).toEqual(["keys", "sealed", "Json+typeName", "Json+typeRevision"]);
    expect(doc).toMatchObject({ sealed: false, "Json+typeName": "MkcJsonLib.jApiKeys", "Json+typeRevision": 1 });
    expect((await get(ts, "/api/v1/apikeys/sealed")).text).toBe(ok(false));

    const stateDir = await tempDir();
    const factory = JSON.parse(await readFile(join(CONFIG_DIR, "apikeys.json"), "utf8")) as Record<string, unknown>;
    const { sealed: _sealed, ...rest } = factory;
    void _sealed;
    await writeFile(join(stateDir, "apikeys.json"), JSON.stringify({ ...rest, "Json+typeRevision": 0 }), { mode: 0o600 });
    const { ts: upgraded } = await sealedServer({ stateDir });
    const onDisk = JSON.parse(await readFile(join(stateDir, "apikeys.json"), "utf8")) as Record<string, unknown>;
    expect(Object.keys(onDisk)).toEqual(["keys", "sealed", "Json+typeName", "Json+typeRevision"]);
    expect(onDisk).toMatchObject({ sealed: false, "Json+typeRevision": 1 });
    expect((await get(upgraded, "/api/v1/apikeys/keys/6/rd")).text).toBe(ok("rdKey7"));
  });
});

describe("sealing", () => {
  it.each(["json", "text"] as LogFormat[])("keys current and in grace become digests: no read, file or %s log line shows a key again; all keep opening", async (format) => {
    const { ts, lines } = await sealedServer({ format });
    // data: new keys with the factory keys in grace; process: an empty (open) read key.
    expect((await put(ts, "/api/v1/apikeys/keys/6", `rd=${DATA_RD}&wr=${DATA_WR}&grace=600`)).status).toBe(200);
    expect((await put(ts, "/api/v1/apikeys/keys/5", "rd=")).status).toBe(200);
    expect(await readFile(join(ts.stateDir, "previous.keys"), "utf8")).toContain("rdKey7");

    const sealing = await seal(ts);
    const secrets = [...FACTORY.filter((k) => k !== "rdKey6"), DATA_RD, DATA_WR];
    // The answer to the sealing PUT is the whole document, as reads now show it.
    for (const s of secrets) expect(sealing.text).not.toContain(s);

    // Every read path: the whole document, a pair, a leaf; an empty key stays "".
    const whole = (await get(ts, "/api/v1/apikeys")).json?.data as { keys: Array<Record<string, unknown>>; sealed: boolean };
    expect(whole.sealed).toBe(true);
    expect(whole.keys[6]).toMatchObject({ rd: fp(ts, DATA_RD), wr: fp(ts, DATA_WR), graceUntil: T0_S + 600 });
    expect(whole.keys[5]).toMatchObject({ rd: "", wr: fp(ts, "wrKey6") });
    expect(whole.keys[1]).toMatchObject({ rd: fp(ts, "rdKey2"), wr: fp(ts, "wrKey2") });
    expect((await get(ts, "/api/v1/apikeys/keys/6")).json?.data).toMatchObject({ rd: fp(ts, DATA_RD), wr: fp(ts, DATA_WR) });
    expect((await get(ts, "/api/v1/apikeys/keys/6/rd")).text).toBe(ok(fp(ts, DATA_RD)));
    expect((await get(ts, "/api/v1/apikeys/keys/5/rd")).text).toBe(ok(""));
    expect((await call(ts, "HEAD", "/api/v1/apikeys/keys/6/wr", MASTER)).status).toBe(200);

    // The keys still open: current ones, grace ones, the open read side; wrong ones do not.
    expect((await get(ts, "/api/v1/data/time", { rd: DATA_RD })).status).toBe(200);
    expect((await get(ts, "/api/v1/data/time", { rd: "rdKey7" })).status).toBe(200);
    expect((await put(ts, "/api/v1/data/entries/2", "pin=false", { rd: DATA_RD, wr: "wrKey7" })).status).toBe(200);
    expect((await put(ts, "/api/v1/data/entries/2", "pin=true", { rd: DATA_RD, wr: DATA_WR })).status).toBe(200);
    expect((await get(ts, "/api/v1/data/time", { rd: "rdKey7x" })).status).toBe(401);
    expect((await get(ts, "/api/v1/process/name")).status).toBe(200);
    expect((await put(ts, "/api/v1/process", "name=x", { wr: "wrKey6" })).status).toBe(200);
    expect((await get(ts, "/api/v1/properties/name", { rd: "rdKey1" })).status).toBe(200);

    // The state files hold digests, never a key; previous.keys says it was written sealed.
    const files = await stateFiles(ts);
    for (const s of secrets) expect(files, s).not.toContain(s);
    expect(files).toContain("$sha256$");
    expect(JSON.parse(await readFile(join(ts.stateDir, "previous.keys"), "utf8"))).toMatchObject({ sealed: true });
    // No log line holds a key; the sealing is audited.
    for (const s of secrets) expect(lines.join("\n"), s).not.toContain(s);
    expect(lines.join("\n")).toContain("keys-sealed");
    expect(lines.join("\n")).toContain(fingerprint(DATA_RD, ts.device.fingerprintSecret));

    // A restart keeps everything sealed and working, the grace too.
    await ts.stop();
    const again = await sealedServer({ stateDir: ts.stateDir, format });
    expect((await get(again.ts, "/api/v1/apikeys/keys/6/rd")).text).toBe(ok(fp(again.ts, DATA_RD)));
    expect((await get(again.ts, "/api/v1/data/time", { rd: DATA_RD })).status).toBe(200);
    expect((await get(again.ts, "/api/v1/data/time", { rd: "rdKey7" })).status).toBe(200);
    expect((await get(again.ts, "/api/v1/apikeys/sealed")).text).toBe(ok(true));
    for (const s of secrets) expect(again.lines.join("\n"), s).not.toContain(s);
  });

  it("keys show prints sealed:<fingerprint> and never a key; keys set keeps digests and takes --rd=generate", async () => {
    const { ts } = await sealedServer();
    await seal(ts);
    await ts.stop();
    const shown = await runCli(["keys", "show", "--state-dir", ts.stateDir]);
    expect(shown.code).toBe(0);
    for (const s of FACTORY) expect(shown.stdout).not.toContain(s);
    expect(shown.stdout).toContain(fp(ts, "rdKey7"));
    expect(shown.stdout).toContain("sealed: the device keeps digests only");

    expect((await runCli(["keys", "set", "data", "--rd=too-short-for-sealed", "--state-dir", ts.stateDir])).code).toBe(1);
    const set = await runCli(["keys", "set", "data", "--rd=generate", "--wr=Offline-Write-Key-0123456789", "--state-dir", ts.stateDir]);
    expect(set.code).toBe(0);
    const generated = /data rd \(generated, shown once\): ([A-Za-z0-9_-]{32})\n/.exec(set.stdout)?.[1] as string;
    expect(generated).toBeDefined();
    const file = await readFile(join(ts.stateDir, "apikeys.json"), "utf8");
    expect(file).not.toContain(generated);
    expect(file).not.toContain("Offline-Write-Key-0123456789");
    expect(set.stderr).not.toContain(generated);
    const again = await sealedServer({ stateDir: ts.stateDir });
    expect((await put(again.ts, "/api/v1/data/entries/2", "pin=false", { rd: generated, wr: "Offline-Write-Key-0123456789" })).status).toBe(200);
  });

  it("is one-way over HTTP: sealed=false is error 8 (pair, leaf, JSON), sealed=true again changes nothing", async () => {
    const { ts } = await sealedServer();
    // Unsealed, sealed=false is no change at all.
    expect((await put(ts, "/api/v1/apikeys", "sealed=false")).status).toBe(200);
    await seal(ts);
    const detail = "a sealed device cannot be unsealed over HTTP (offline: apikeyd reset --keys-only)";
    expect((await put(ts, "/api/v1/apikeys", "sealed=false")).text).toBe(failure(8, "JSON_ERROR_INVALID_VALUE", detail));
    expect((await put(ts, "/api/v1/apikeys", { sealed: false })).text).toBe(failure(8, "JSON_ERROR_INVALID_VALUE", detail));
    expect((await put(ts, "/api/v1/apikeys/sealed", "sealed=0")).text).toBe(failure(8, "JSON_ERROR_INVALID_VALUE", detail));
    expect((await put(ts, "/api/v1/apikeys/sealed", "sealed=1")).text).toBe(ok(true));
    expect((await get(ts, "/api/v1/apikeys/sealed")).text).toBe(ok(true));
    // Only the apikeys pair seals.
    expect((await put(ts, "/api/v1/apikeys", "sealed=true", { rd: "rdKey1", wr: "wrKey1" })).status).toBe(401);
  });

  it("offline reset --keys-only returns to the factory keys, unsealed", async () => {
    const { ts } = await sealedServer();
    expect((await put(ts, "/api/v1/apikeys/keys/6", `rd=${DATA_RD}&grace=60`)).status).toBe(200);
    await seal(ts);
    await ts.stop();
    expect((await runCli(["reset", "--keys-only", "--yes", "--state-dir", ts.stateDir])).code).toBe(0);
    const again = await sealedServer({ stateDir: ts.stateDir });
    expect((await get(again.ts, "/api/v1/apikeys/sealed")).text).toBe(ok(false));
    expect((await get(again.ts, "/api/v1/apikeys/keys/6/rd")).text).toBe(ok("rdKey7"));
    expect(await readdir(ts.stateDir)).not.toContain("previous.keys");
  });
});

describe("setting keys", () => {
  it("rd=generate / wr=generate: the device makes 192-bit keys, shown in that answer only, working at once on a connection opened before", async () => {
    const { ts, lines } = await sealedServer();
    await seal(ts);
    const client = new Client(ts.origin, { pipelining: 1 });
    try {
      const before = await client.request({ method: "GET", path: "/api/v1/data/time", headers: { ApiRdKey: "rdKey7" } });
      await before.body.text();
      expect(before.statusCode).toBe(200);
      const a = await put(ts, "/api/v1/apikeys/keys/6", "rd=generate&wr=generate");
      const pair = a.json?.data as { rd: string; wr: string };
      expect(pair.rd).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect(pair.wr).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect(pair.rd).not.toBe(pair.wr);
      expect(a.headers["apikeyd-warning"]).toBeUndefined();
      // The same keep-alive connection: the old key is refused, the new one opens.
      for (const [key, status] of [["rdKey7", 401], [pair.rd, 200], [pair.rd, 200]] as const) {
        const r = await client.request({ method: "GET", path: "/api/v1/data/time", headers: { ApiRdKey: key } });
        await r.body.text();
        expect(r.statusCode).toBe(status);
      }
      expect((await put(ts, "/api/v1/data/entries/2", "pin=false", { rd: pair.rd, wr: pair.wr })).status).toBe(200);
      // Reads show the fingerprint only; nothing else ever shows the keys.
      expect((await get(ts, "/api/v1/apikeys/keys/6")).json?.data).toMatchObject({ rd: fp(ts, pair.rd), wr: fp(ts, pair.wr) });
      expect(await stateFiles(ts)).not.toContain(pair.rd);
      expect(lines.join("\n")).not.toContain(pair.rd);
      expect(lines.join("\n")).not.toContain(pair.wr);
      // A leaf PUT shows the one key it set.
      const leaf = await put(ts, "/api/v1/apikeys/keys/6/wr", "wr=generate");
      expect(leaf.json?.data).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect((await get(ts, "/api/v1/apikeys/keys/6/wr")).text).toBe(ok(fp(ts, leaf.json?.data as string)));
    } finally {
      await client.close();
    }
  });

  it("generate works unsealed too, and in JSON; the literal \"generate\" is never stored", async () => {
    const { ts } = await sealedServer();
    const a = await put(ts, "/api/v1/apikeys/keys/6", { rd: "generate" });
    const rd = (a.json?.data as { rd: string }).rd;
    expect(rd).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect((await get(ts, "/api/v1/apikeys/keys/6/rd")).text).toBe(ok(rd));
    expect((await get(ts, "/api/v1/data/time", { rd })).status).toBe(200);
    expect((await get(ts, "/api/v1/data/time", { rd: "generate" })).status).toBe(401);
  });

  it("while sealed, a chosen key is 24 characters or more (8, nothing changed); \"\" still opens; sealed forms are no keys anywhere", async () => {
    const { ts } = await sealedServer();
    for (const body of ["rd=sealed:12345678", "wr=$sha256$x"]) {
      expect((await put(ts, "/api/v1/apikeys/keys/6", body)).json?.meta.error).toBe(8);
    }
    await seal(ts);
    const short = "x".repeat(23);
    const a = await put(ts, "/api/v1/apikeys/keys/6", `rd=${short}`);
    expect(a.text).toBe(failure(8, "JSON_ERROR_INVALID_VALUE", 'rd takes, on a sealed device, generate, "" or a key of at least 24 characters'));
    expect((await put(ts, "/api/v1/apikeys/keys/6/wr", { wr: short })).json?.meta.error).toBe(8);
    expect((await put(ts, "/api/v1/apikeys/keys/6", `rd=${fp(ts, "rdKey7")}`)).text).toBe(
      failure(8, "JSON_ERROR_INVALID_VALUE", "rd cannot start with sealed: or $sha256$ (what a sealed device shows and keeps in place of a key)"),
    );
    expect((await get(ts, "/api/v1/data/time", { rd: "rdKey7" })).status).toBe(200);
    // 24 characters: taken, shown in this answer, sealed at once.
    const chosen = "y".repeat(24);
    expect((await put(ts, "/api/v1/apikeys/keys/6", `rd=${chosen}`)).json?.data).toMatchObject({ rd: chosen, wr: fp(ts, "wrKey7") });
    expect((await get(ts, "/api/v1/apikeys/keys/6/rd")).text).toBe(ok(fp(ts, chosen)));
    expect((await get(ts, "/api/v1/data/time", { rd: chosen })).status).toBe(200);
    // An empty key opens the side, sealed or not.
    expect((await put(ts, "/api/v1/apikeys/keys/6", "rd=")).json?.data).toMatchObject({ rd: "" });
    expect((await get(ts, "/api/v1/data/time")).status).toBe(200);
  });

  it("confirm-or-revert works sealed: an unconfirmed change goes back to the previous digests", async () => {
    const { ts, now, lines } = await sealedServer();
    await seal(ts);
    const a = await put(ts, "/api/v1/apikeys/keys/6", "rd=generate&wr=generate&confirm=30");
    const fresh = a.json?.data as { rd: string; wr: string };
    expect((await get(ts, "/api/v1/data/time", { rd: fresh.rd })).status).toBe(200);
    // A read confirms rd only; the change of wr waits. Past the deadline: back to the factory keys (as digests).
    now.ms += 31_000;
    await until("the change reverts", async () => (await get(ts, "/api/v1/apikeys/keys/6/confirmUntil")).text === ok(0));
    expect((await get(ts, "/api/v1/apikeys/keys/6")).json?.data).toMatchObject({ rd: fp(ts, "rdKey7"), wr: fp(ts, "wrKey7") });
    expect((await get(ts, "/api/v1/data/time", { rd: "rdKey7" })).status).toBe(200);
    expect((await get(ts, "/api/v1/data/time", { rd: fresh.rd })).status).toBe(401);
    expect(events(lines, "key-reverted")).toEqual([expect.objectContaining({ pair: "data", rd: fingerprint("rdKey7", ts.device.fingerprintSecret) })]);
    expect(await stateFiles(ts)).not.toContain("rdKey7");
  });
});

describe("crashes and damaged files", () => {
  it("a crash between previous.keys and apikeys.json: the next start finishes the sealing, grace keys kept", async () => {
    const { ts } = await sealedServer();
    expect((await put(ts, "/api/v1/apikeys/keys/6", `rd=${DATA_RD}&wr=${DATA_WR}&grace=600`)).status).toBe(200);
    await ts.stop();
    const clear = await readFile(join(ts.stateDir, "apikeys.json"), "utf8");
    const again = await sealedServer({ stateDir: ts.stateDir });
    await seal(again.ts);
    await again.ts.stop();
    // As if the power went after previous.keys (sealed) but before apikeys.json was renamed.
    await writeFile(join(ts.stateDir, "apikeys.json"), clear, { mode: 0o600 });
    const warnings: string[] = [];
    const third = await sealedServer({ stateDir: ts.stateDir, load: { warn: (m) => warnings.push(m) } });
    expect(warnings.join("\n")).toContain("finished sealing");
    expect((await get(third.ts, "/api/v1/apikeys/sealed")).text).toBe(ok(true));
    expect((await get(third.ts, "/api/v1/data/time", { rd: "rdKey7" })).status).toBe(200);
    expect((await get(third.ts, "/api/v1/data/time", { rd: DATA_RD })).status).toBe(200);
    const files = await stateFiles(third.ts);
    for (const s of [DATA_RD, DATA_WR, "rdKey7", "wrKey7"]) expect(files).not.toContain(s);
  });

  it("the loader refuses a sealed file with a key in clear, and a digest on a device that is not sealed", async () => {
    const { ts } = await sealedServer();
    await seal(ts);
    await ts.stop();
    const path = join(ts.stateDir, "apikeys.json");
    const sealedText = await readFile(path, "utf8");
    const doc = JSON.parse(sealedText) as { keys: Array<Record<string, unknown>>; sealed: boolean };
    await writeFile(path, JSON.stringify({ ...doc, sealed: false }, null, 2));
    await expect(startServer({ stateDir: ts.stateDir })).rejects.toThrow(/a sealed key on a device that is not sealed/);
    doc.keys[6] = { ...doc.keys[6], rd: "clear-key-in-a-sealed-file" };
    await writeFile(path, JSON.stringify(doc, null, 2));
    await expect(startServer({ stateDir: ts.stateDir })).rejects.toThrow(/a sealed device keeps digests only/);
  });
});

describe("an update that adds an endpoint to a sealed device", () => {
  it("seals the new pair's factory keys before they reach the disk or an answer, and the device restarts", async () => {
    const configDir = await copyConfig();
    const first = await startServer({ configDir });
    expect((await call(first, "PUT", "/api/v1/apikeys", { rd: "rdKey2", wr: "wrKey2", body: "sealed=true" })).status).toBe(200);
    await first.stop();
    // The update: a new endpoint and its pair in the factory config.
    await writeFile(join(configDir, "pump.json"), JSON.stringify({ rate: 1, "Json+typeName": "Vendor.jPump", "Json+typeRevision": 0 }));
    const apikeys = JSON.parse(await readFile(join(configDir, "apikeys.json"), "utf8")) as { keys: unknown[] };
    apikeys.keys.push({ ...(apikeys.keys[0] as object), name: "pump", rd: "rdKeyPump", wr: "wrKeyPump" });
    await writeFile(join(configDir, "apikeys.json"), JSON.stringify(apikeys, null, 2));

    for (let restart = 0; restart < 2; restart++) {
      const ts = await startServer({ configDir, stateDir: first.stateDir });
      const onDisk = await readFile(join(first.stateDir, "apikeys.json"), "utf8");
      expect(onDisk).not.toContain("rdKeyPump");
      expect(onDisk).not.toContain("wrKeyPump");
      const pair = JSON.parse((await call(ts, "GET", "/api/v1/apikeys/keys/7", { rd: "rdKey2" })).text).data as { name: string; rd: string; wr: string };
      expect(pair).toMatchObject({ name: "pump", rd: expect.stringMatching(/^sealed:[0-9a-f]{8}$/), wr: expect.stringMatching(/^sealed:[0-9a-f]{8}$/) });
      expect((await call(ts, "GET", "/api/v1/pump/rate", { rd: "rdKeyPump" })).text).toBe(ok(1));
      await ts.stop();
    }
  });
});

describe("the digest check", () => {
  it("is SHA-256 of the device's salt and the key, compared in constant time: right key only, any length refused", () => {
    const secret = Buffer.alloc(32, 7);
    const stored = sealKey("the-right-key-of-24-chars", secret);
    expect(stored).toMatch(/^\$sha256\$[0-9a-f]{8}\$[A-Za-z0-9_-]{43}$/);
    expect(sealKey(stored, secret)).toBe(stored);
    expect(sealKey("", secret)).toBe("");
    const keys = keysOf(stored, "", sealSalt(secret));
    expect(keys.rdSlot.length).toBe(32);
    expect(keyMatches(keys.rdSlot, "the-right-key-of-24-chars")).toBe(true);
    for (const wrong of ["the-right-key-of-24-charz", "", "the-right-key-of-24-chars ", stored, "x".repeat(129)]) expect(keyMatches(keys.rdSlot, wrong)).toBe(false);
    // Another device (another secret) has another digest: a file copied elsewhere opens nothing.
    expect(keyMatches(keysOf(stored, "", sealSalt(Buffer.alloc(32, 8))).rdSlot, "the-right-key-of-24-chars")).toBe(false);
    // Without the salt (a report's keyring) a sealed slot matches nothing.
    expect(keyMatches(keysOf(stored, "").rdSlot, "the-right-key-of-24-chars")).toBe(false);
  });
});
