/**
 * Concurrent PUTs (docs/api.md §6): applied one after another with no lost update, sharing flushes, each
 * answered only once its change is on disk; a PUT that changes nothing writes nothing; the live
 * `data` values need no disk at all, a saved output's value is on disk before its answer.
 */

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { FaultFs } from "./fault-fs.ts";
import { call, cleanup, closeAgents, ok, startServer, type TestServer } from "./helpers.ts";

const fileSystems: FaultFs[] = [];
afterEach(async () => {
  // A failed test may leave a write held: let it finish so the server can stop.
  for (const fs of fileSystems.splice(0)) fs.releaseAll();
  await cleanup();
});
afterAll(closeAgents);

function faultFs(): FaultFs {
  const fs = new FaultFs();
  fileSystems.push(fs);
  return fs;
}

const PROPERTIES = { rd: "rdKey1", wr: "wrKey1" };
const DATA = { rd: "rdKey7", wr: "wrKey7" };

/** The 16 writable members of `properties`, each with a way to make its n-th distinct value. */
const MEMBERS: ReadonlyArray<{ path: string; member: string; value: (n: number) => string }> = [
  { path: "", member: "name", value: (n) => `name-${n}` },
  { path: "/networkInterfaces/0", member: "domain", value: (n) => `d${n}.example` },
  { path: "/networkInterfaces/0/hostEntries/0", member: "dhcp", value: (n) => String(n % 2 === 1) },
  { path: "/networkInterfaces/0/hostEntries/0", member: "address", value: (n) => `10.0.1.${n}` },
  { path: "/networkInterfaces/0/hostEntries/0", member: "mask", value: (n) => `255.255.${n}.0` },
  { path: "/networkInterfaces/0/hostEntries/0", member: "gateway", value: (n) => `10.0.2.${n}` },
  { path: "/networkInterfaces/0/hostEntries/0", member: "dns", value: (n) => `10.0.3.${n}` },
  { path: "/sntpEntries/0", member: "address", value: (n) => `10.0.4.${n}` },
  { path: "/sntpEntries/0", member: "enable", value: (n) => String(n % 2 === 1) },
  { path: "/mqtt", member: "root", value: (n) => `root${n}` },
  { path: "/mqtt", member: "enable", value: (n) => String(n % 2 === 1) },
  { path: "/mqtt", member: "address", value: (n) => `10.0.5.${n}` },
  { path: "/mqtt", member: "port", value: (n) => String(2000 + n) },
  { path: "/mqtt", member: "keepalive", value: (n) => String(100 + n) },
  { path: "/mqtt", member: "user", value: (n) => `user${n}` },
  { path: "/mqtt", member: "pass", value: (n) => `pass${n}` },
];

const asJson = (text: string): unknown => (text === "true" ? true : text === "false" ? false : /^\d+$/.test(text) ? Number(text) : text);

function valueAt(doc: unknown, path: string, member: string): unknown {
  let node = doc as Record<string, unknown>;
  for (const segment of path.split("/").filter((s) => s !== "")) node = node[segment] as Record<string, unknown>;
  return node[member];
}

async function readState(ts: TestServer, name: string): Promise<unknown> {
  return JSON.parse(await readFile(join(ts.stateDir, `${name}.json`), "utf8"));
}

describe("concurrent writers to one document", () => {
  it("every member ends at its last written value, in memory and after a restart", async () => {
    const ts = await startServer();
    const ROUNDS = 6;
    await Promise.all(
      MEMBERS.map(async ({ path, member, value }) => {
        for (let n = 1; n <= ROUNDS; n++) {
          const a = await call(ts, "PUT", `/api/v1/properties${path}/${member}`, { ...PROPERTIES, body: `${member}=${value(n)}` });
          expect(a.text).toBe(ok(asJson(value(n))));
        }
      }),
    );
    const expected = MEMBERS.map(({ value }) => asJson(value(ROUNDS)));
    const inMemory = (await call(ts, "GET", "/api/v1/properties", PROPERTIES)).json?.data;
    expect(MEMBERS.map(({ path, member }) => valueAt(inMemory, path, member))).toEqual(expected);
    const onDisk = await readState(ts, "properties");
    expect(MEMBERS.map(({ path, member }) => valueAt(onDisk, path, member))).toEqual(expected);

    await ts.stop();
    const again = await startServer({ stateDir: ts.stateDir });
    const restarted = (await call(again, "GET", "/api/v1/properties", PROPERTIES)).json?.data;
    expect(MEMBERS.map(({ path, member }) => valueAt(restarted, path, member))).toEqual(expected);
    expect(restarted).toEqual(inMemory);
  });

  it("16 concurrent PUTs share flushes: two durable writes, each answered only once its change is on disk", async () => {
    const fs = faultFs();
    const ts = await startServer({ load: { fs } });
    const docs = ts.device.endpoints.get("properties")?.docs;
    fs.resetCounts();
    fs.hold("dir-sync");

    const [head, ...rest] = MEMBERS.map(({ path, member, value }) => ({ path, member, text: value(7) }));
    const put = ({ path, member, text }: { path: string; member: string; text: string }) => {
      const answer = call(ts, "PUT", `/api/v1/properties${path}/${member}`, { ...PROPERTIES, body: `${member}=${text}` });
      const seen = { answered: false };
      void answer.then(() => (seen.answered = true));
      return { answer, seen };
    };

    // The first PUT's write reaches its last step (the folder flush) and is held there.
    const first = put(head as (typeof MEMBERS)[number] & { text: string });
    await fs.whenWaiting("dir-sync", 1);
    // Fifteen more arrive while it is being flushed; wait until every one is staged.
    const others = rest.map(put);
    const latest = (): unknown => docs?.latest;
    while (rest.some(({ path, member, text }) => valueAt(latest(), path, member) !== asJson(text))) {
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(first.seen.answered).toBe(false);
    expect((await call(ts, "GET", "/api/v1/properties/name", PROPERTIES)).text).toBe(ok("eNetMini1"));

    // The first flush completes: its PUT is answered, and the fifteen go to disk together.
    fs.releaseOne("dir-sync");
    expect((await first.answer).text).toBe(ok("name-7"));
    await fs.whenWaiting("dir-sync", 1);
    // Their write is held at the folder flush: none is answered, none is visible to readers yet.
    const mqtt = await call(ts, "GET", "/api/v1/properties/mqtt/user", PROPERTIES);
    expect(mqtt.text).toBe(ok("user_mqtt"));
    expect(others.filter((o) => o.seen.answered)).toEqual([]);

    fs.release("dir-sync");
    const answers = await Promise.all(others.map((o) => o.answer));
    expect(answers.map((a) => a.text)).toEqual(rest.map(({ text }) => ok(asJson(text))));
    // 16 PUTs, 2 durable writes (one temp file each), not 16.
    expect(fs.counts.get("open")).toBe(2);
    expect(fs.counts.get("dir-sync")).toBe(2);
    const onDisk = await readState(ts, "properties");
    expect(MEMBERS.map(({ path, member }) => valueAt(onDisk, path, member))).toEqual(MEMBERS.map(({ value }) => asJson(value(7))));
  });

  it("a PUT that changes nothing writes nothing", async () => {
    const fs = faultFs();
    const ts = await startServer({ load: { fs } });
    fs.resetCounts();
    expect((await call(ts, "PUT", "/api/v1/properties", { ...PROPERTIES, body: "name=eNetMini1&mqtt=x" })).status).toBe(400);
    expect((await call(ts, "PUT", "/api/v1/properties", { ...PROPERTIES, body: "name=eNetMini1" })).status).toBe(200);
    expect((await call(ts, "PUT", "/api/v1/properties/mqtt", { ...PROPERTIES, body: "port=1883&enable=0" })).status).toBe(200);
    expect((await call(ts, "PUT", "/api/v1/process/entries/2", { rd: "rdKey6", wr: "wrKey6", body: "save=true" })).status).toBe(200);
    expect(fs.diskCalls).toBe(0);
    // A real change does write (the counter is not blind).
    expect((await call(ts, "PUT", "/api/v1/properties/mqtt", { ...PROPERTIES, body: "port=1884" })).status).toBe(200);
    expect(fs.counts.get("open")).toBe(1);
  });
});

describe("data: live values in memory, saved outputs on disk", () => {
  it("a live output's value is answered without touching the disk, even while a flush is held", async () => {
    const fs = faultFs();
    const ts = await startServer({ load: { fs } });
    const before = await readFile(join(ts.stateDir, "data.json"), "utf8");
    fs.resetCounts();
    const a = await call(ts, "PUT", "/api/v1/data/entries/1/pin", { ...DATA, body: "pin=55.5" });
    expect(a.text).toBe(ok(55.5));
    expect((await call(ts, "GET", "/api/v1/data/entries/1/pin", DATA)).text).toBe(ok(55.5));
    expect(fs.diskCalls).toBe(0);
    expect(await readFile(join(ts.stateDir, "data.json"), "utf8")).toBe(before);

    // After a restart it starts from its factory value again.
    await ts.stop();
    const again = await startServer({ stateDir: ts.stateDir });
    expect((await call(again, "GET", "/api/v1/data/entries/1/pin", DATA)).text).toBe(ok(0.004));
  });

  it("a saved output's value (process save true) is on disk before the answer and comes back at start", async () => {
    const fs = faultFs();
    const ts = await startServer({ load: { fs } });
    fs.hold("dir-sync");
    const answer = call(ts, "PUT", "/api/v1/data/entries/2/pin", { ...DATA, body: "pin=false" });
    let answered = false;
    void answer.then(() => (answered = true));
    await fs.whenWaiting("dir-sync", 1);
    // The new value is in the file (renamed over), its folder flush held: no answer, nobody sees it.
    expect((await readState(ts, "data")) as { entries: Array<{ pin: unknown }> }).toMatchObject({ entries: [{}, {}, { pin: false }, {}] });
    expect((await call(ts, "GET", "/api/v1/data/entries/2/pin", DATA)).text).toBe(ok(true));
    expect(answered).toBe(false);
    fs.release("dir-sync");
    expect((await answer).text).toBe(ok(false));

    // The live AO value is not saved; the DO value is.
    expect((await call(ts, "PUT", "/api/v1/data/entries/1/pin", { ...DATA, body: "pin=9" })).text).toBe(ok(9));
    await ts.stop();
    const again = await startServer({ stateDir: ts.stateDir });
    expect((await call(again, "GET", "/api/v1/data/entries/2/pin", DATA)).text).toBe(ok(false));
    expect((await call(again, "GET", "/api/v1/data/entries/1/pin", DATA)).text).toBe(ok(0.004));

    // With save false, the output starts from its factory value at the next start.
    expect((await call(again, "PUT", "/api/v1/process/entries/2/save", { rd: "rdKey6", wr: "wrKey6", body: "save=false" })).text).toBe(ok(false));
    await again.stop();
    const third = await startServer({ stateDir: ts.stateDir });
    expect((await call(third, "GET", "/api/v1/data/entries/2/pin", DATA)).text).toBe(ok(true));
  });
});
