/**
 * The I/O driver (docs/api.md §12, docs/io-driver.md) against real child processes: the simulator
 * and test/io-drivers/scripted.mjs, whose misbehaviour its arguments choose. Back-off, timeouts and
 * pulses are configured short, so no test sleeps long.
 */

import { existsSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import type { Logger } from "../src/common/log.ts";
import { IoBridge, type IoOptions } from "../src/io/io-bridge.ts";
import { POINT_ERROR } from "../src/io/protocol.ts";
import { call, cleanup, closeAgents, deferCleanup, failure, ok, withoutDetail, ROOT_DIR, startServer, tempDir, waitFor, type TestServer } from "./helpers.ts";

afterEach(cleanup);
afterAll(closeAgents);

const KEYS = { rd: "rdKey7", wr: "wrKey7" };
const SCRIPTED = join(ROOT_DIR, "test", "io-drivers", "scripted.mjs");
const SIMULATOR = join(ROOT_DIR, "scripts", "io", "simulator.mjs");
const IO_ERROR = failure(18, "JSON_ERROR_IO");
/** Error 18 with the detail that says why (src/io/output-gate.ts). */
const ioError = (why: string): string => failure(18, "JSON_ERROR_IO", `${why}, so the output was not changed`);

interface IoServer {
  readonly ts: TestServer;
  readonly io: IoBridge;
  readonly logLines: string[];
  /** The lines the scripted driver recorded (with --record). */
  recorded(): string[];
}

/** A server whose data endpoint is driven by `node <driver...>`; `record` adds --record to the scripted driver. */
async function startIo(driver: readonly string[], options: { stateDir?: string; record?: boolean; io?: Partial<IoOptions> } = {}): Promise<IoServer> {
  const logLines: string[] = [];
  const log: Logger = { log: (level, message, fields) => logLines.push(`${level} ${message} ${JSON.stringify(fields ?? {})}`) };
  const recordFile = join(await tempDir("apikeyd-io-"), "received.txt");
  const argv = [process.execPath, ...driver, ...(options.record === true ? ["--record", recordFile] : [])];
  let io: IoBridge | undefined;
  const ts = await startServer({
    stateDir: options.stateDir,
    server: { log },
    withDevice: (device) => {
      io = new IoBridge(device, { argv, timeoutMs: 1_000, log, backoff: { initialMs: 50, maxMs: 400, resetAfterMs: 60_000 }, ...options.io });
      io.start();
      return { outputs: io };
    },
  });
  const bridge = io as unknown as IoBridge;
  deferCleanup(() => bridge.stop());
  const recorded = (): string[] => (existsSync(recordFile) ? readFileSync(recordFile, "utf8").split("\n").filter((l) => l !== "") : []);
  return { ts, io: bridge, logLines, recorded };
}

async function data(ts: TestServer): Promise<{ time: number; entries: { pin: unknown; time: number; error: number }[] }> {
  return (await call(ts, "GET", "/api/v1/data", KEYS)).json?.data as never;
}

const ready = (s: IoServer): Promise<true> => waitFor("the driver to be ready", () => (s.io.driverReady ? true : undefined));
/** Until the driver acknowledged both outputs' values (their error 0). */
const synced = (s: IoServer): Promise<true> =>
  waitFor("the outputs' acknowledgements", async () => ((await data(s.ts)).entries.filter((e, i) => (i === 1 || i === 2) && e.error === 0).length === 2 ? true : undefined));
/** The lines a scripted driver received, without its start lines. */
const changes = (s: IoServer): { id: number; entry: number; pin: unknown }[] => s.recorded().filter((l) => !l.startsWith("start ")).map((l) => JSON.parse(l));

describe("values flow both ways", () => {
  it("the simulator's inputs move for every read, and an output PUT reaches it and is answered once acknowledged", async () => {
    const s = await startIo([SIMULATOR, "--interval", "20"]);
    await ready(s);
    const first = await waitFor("a report", async () => ((await data(s.ts)).entries[0]?.error === 0 ? data(s.ts) : undefined));
    const later = await waitFor("the input to move", async () => {
      const d = await data(s.ts);
      return d.entries[0]?.pin !== first.entries[0]?.pin ? d : undefined;
    });
    expect(typeof later.entries[0]?.pin).toBe("number");
    expect(later.time).toBeGreaterThan(0);
    expect(later.entries[0]?.time).toBeGreaterThan(0);
    const put = await call(s.ts, "PUT", "/api/v1/data/entries/1/pin", { ...KEYS, body: "pin=42.5" });
    expect(put.text).toBe(ok(42.5));
    expect((await data(s.ts)).entries[1]).toMatchObject({ pin: 42.5, error: 0 });
    await waitFor("the simulator's echo", () => (s.logLines.some((l) => l.includes("PWM LED (entry 1) := 42.5")) ? true : undefined));
  });

  it("sends every output's value first, in the documented line format, then the changes in order", async () => {
    const s = await startIo([SCRIPTED], { record: true });
    await waitFor("the initial values", () => (changes(s).length >= 2 ? true : undefined));
    expect(changes(s).map(({ entry, pin }) => ({ entry, pin }))).toEqual([
      { entry: 1, pin: 0.004 },
      { entry: 2, pin: true },
    ]);
    expect((await call(s.ts, "PUT", "/api/v1/data/entries/2", { ...KEYS, body: "pin=false" })).status).toBe(200);
    expect((await call(s.ts, "PUT", "/api/v1/data/entries/1", { ...KEYS, body: { pin: 7 } })).status).toBe(200);
    const lines = s.recorded().filter((l) => !l.startsWith("start "));
    expect(lines.slice(2)).toEqual([`{"id":3,"entry":2,"pin":false}`, `{"id":4,"entry":1,"pin":7}`]);
    expect(lines[0]).toBe(`{"id":1,"entry":1,"pin":0.004}`);
  });

  it("an input report is seen by the very next read (cached answers dropped), without a disk write", async () => {
    const s = await startIo([SCRIPTED, "--report", '{"entry":0,"pin":12.5,"error":0}', "--report", '{"entry":3,"error":7}']);
    const before = await readFile(join(s.ts.stateDir, "data.json"), "utf8");
    // Cache the answer first: the report must drop it.
    await call(s.ts, "GET", "/api/v1/data/entries/0/pin", KEYS);
    await waitFor("the report", async () => ((await call(s.ts, "GET", "/api/v1/data/entries/0/pin", KEYS)).text === ok(12.5) ? true : undefined), 2_000);
    await waitFor("the second report", async () => ((await data(s.ts)).entries[3]?.error === 7 ? true : undefined), 2_000);
    const d = await data(s.ts);
    expect(d.entries[0]).toMatchObject({ pin: 12.5, error: 0 });
    expect(d.entries[3]).toMatchObject({ pin: false, error: 7, time: 0 });
    expect(d.time).toBeGreaterThan(0);
    expect(await readFile(join(s.ts.stateDir, "data.json"), "utf8")).toBe(before);
  });

  it("points that have not reported show 1001, outputs acknowledged show 0", async () => {
    const s = await startIo([SCRIPTED]);
    await ready(s);
    await waitFor("the acknowledgements", async () => ((await data(s.ts)).entries[2]?.error === 0 ? true : undefined));
    const d = await data(s.ts);
    expect(d.entries.map((e) => e.error)).toEqual([POINT_ERROR.NO_REPORT, 0, 0, POINT_ERROR.NO_REPORT]);
  });
});

describe("a driver that fails a change: error 18, nothing changed", () => {
  it("refuses (ok:false)", async () => {
    const s = await startIo([SCRIPTED, "--refuse-value", "77"]);
    await synced(s);
    const before = await data(s.ts);
    const file = await readFile(join(s.ts.stateDir, "data.json"), "utf8");
    const a = await call(s.ts, "PUT", "/api/v1/data/entries/1/pin", { ...KEYS, body: "pin=77" });
    expect({ status: a.status, text: a.text }).toEqual({ status: 502, text: ioError("the I/O driver refused this value") });
    expect((await data(s.ts)).entries[1]).toEqual(before.entries[1]);
    expect(await readFile(join(s.ts.stateDir, "data.json"), "utf8")).toBe(file);
    expect((await call(s.ts, "PUT", "/api/v1/data/entries/1/pin", { ...KEYS, body: "pin=78" })).text).toBe(ok(78));
  });

  it("is slow (no acknowledgement within --io-timeout): 18, then killed, restarted, and given the values again", async () => {
    const s = await startIo([SCRIPTED, "--silent-value", "false"], { record: true, io: { timeoutMs: 300 } });
    await ready(s);
    const pid = s.io.driverPid;
    const started = Date.now();
    const a = await call(s.ts, "PUT", "/api/v1/data/entries/2/pin", { ...KEYS, body: "pin=false" });
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(a.text).toBe(ioError("the I/O driver did not acknowledge the change in time"));
    expect((await data(s.ts)).entries[2]?.pin).toBe(true);
    await waitFor("a new driver", () => (s.io.driverReady && s.io.driverPid !== pid ? true : undefined));
    await waitFor("the values again", () => (s.recorded().filter((l) => l.startsWith("start ")).length === 2 && changes(s).length >= 5 ? true : undefined));
    const lines = s.recorded();
    const lastStart = lines.map((l) => l.startsWith("start ")).lastIndexOf(true);
    const afterRestart = lines.slice(lastStart + 1).map((l) => JSON.parse(l) as { entry: number; pin: unknown });
    expect(afterRestart.map(({ entry, pin }) => ({ entry, pin }))).toEqual([
      { entry: 1, pin: 0.004 },
      { entry: 2, pin: true },
    ]);
    expect(s.io.counters.timeouts).toBe(1);
  });

  it("dies in the middle of a change: 18, and the next driver gets the values first", async () => {
    const s = await startIo([SCRIPTED, "--die-value", "13"], { record: true });
    await ready(s);
    const a = await call(s.ts, "PUT", "/api/v1/data/entries/1/pin", { ...KEYS, body: "pin=13" });
    expect(a.text).toBe(ioError("the I/O driver ended during the change"));
    expect((await data(s.ts)).entries[1]?.pin).toBe(0.004);
    await waitFor("the restart", () => (s.recorded().filter((l) => l.startsWith("start ")).length === 2 && s.io.driverReady ? true : undefined));
    expect((await call(s.ts, "PUT", "/api/v1/data/entries/1/pin", { ...KEYS, body: "pin=14" })).text).toBe(ok(14));
  });
});

describe("while no driver runs", () => {
  it("every point shows error 1000 and output PUTs answer 18 at once; member errors and other endpoints come first", async () => {
    // A driver that cannot start at all: restarted with back-off, for ever.
    const s = await startIo(["unused"], { io: { argv: ["/nonexistent/driver"] } });
    await waitFor("a failed start", () => (s.logLines.some((l) => l.includes("I/O driver ended")) ? true : undefined));
    expect((await data(s.ts)).entries.map((e) => e.error)).toEqual([1000, 1000, 1000, 1000]);
    const started = Date.now();
    expect((await call(s.ts, "PUT", "/api/v1/data/entries/2/pin", { ...KEYS, body: "pin=false" })).text).toBe(ioError("no I/O driver is running"));
    expect(Date.now() - started).toBeLessThan(500);
    // Error 18 comes after the member errors (docs/api.md §5).
    expect((await call(s.ts, "PUT", "/api/v1/data/entries/2/pin", { ...KEYS, body: "pin=maybe" })).json?.meta.error).toBe(8);
    expect((await call(s.ts, "PUT", "/api/v1/data/entries/2", { ...KEYS, body: "nope=1" })).json?.meta.error).toBe(7);
    expect((await call(s.ts, "PUT", "/api/v1/data/entries/0", { ...KEYS, body: "pin=1" })).json?.meta.error).toBe(6);
    // Writes that are no output's value do not need the driver.
    expect((await call(s.ts, "PUT", "/api/v1/process/entries/2/pulse", { rd: "rdKey6", wr: "wrKey6", body: "pulse=5" })).text).toBe(ok(5));
  });

  it("a PUT during a restart answers 18; once restarted, PUTs pass again", async () => {
    const s = await startIo([SCRIPTED, "--die-value", "13"], { io: { backoff: { initialMs: 400, maxMs: 400, resetAfterMs: 60_000 } } });
    await ready(s);
    expect(withoutDetail((await call(s.ts, "PUT", "/api/v1/data/entries/1/pin", { ...KEYS, body: "pin=13" })).text)).toBe(IO_ERROR);
    expect(s.io.driverReady).toBe(false);
    expect((await data(s.ts)).entries.map((e) => e.error)).toEqual([1000, 1000, 1000, 1000]);
    expect(withoutDetail((await call(s.ts, "PUT", "/api/v1/data/entries/1/pin", { ...KEYS, body: "pin=2" })).text)).toBe(IO_ERROR);
    await ready(s);
    expect((await call(s.ts, "PUT", "/api/v1/data/entries/1/pin", { ...KEYS, body: "pin=2" })).text).toBe(ok(2));
  });
});

describe("restarts", () => {
  it("back off: doubling from the first wait up to the longest", async () => {
    const s = await startIo([SCRIPTED, "--exit-after", "0"], { record: true, io: { backoff: { initialMs: 40, maxMs: 320, resetAfterMs: 60_000 } } });
    const starts = await waitFor("seven starts", () => {
      const times = s.recorded().filter((l) => l.startsWith("start ")).map((l) => Number(l.split(" ")[2]));
      return times.length >= 7 ? times : undefined;
    }, 6_000);
    const gaps = starts.slice(1, 7).map((t, i) => t - (starts[i] as number));
    // Each gap is at least its back-off (40, 80, 160, 320, 320, 320 ms) and not wildly more.
    [40, 80, 160, 320, 320, 320].forEach((wait, i) => {
      expect(gaps[i]).toBeGreaterThanOrEqual(wait - 5);
      expect(gaps[i]).toBeLessThan(wait + 600);
    });
  });

  it("kill -9 of the driver: restarted, no crash, state intact", async () => {
    const s = await startIo([SCRIPTED]);
    await ready(s);
    expect((await call(s.ts, "PUT", "/api/v1/data/entries/2/pin", { ...KEYS, body: "pin=false" })).status).toBe(200);
    const pid = s.io.driverPid as number;
    process.kill(pid, "SIGKILL");
    await waitFor("a new driver", () => (s.io.driverReady && s.io.driverPid !== pid ? true : undefined));
    expect((await data(s.ts)).entries[2]?.pin).toBe(false);
    expect(JSON.parse(await readFile(join(s.ts.stateDir, "data.json"), "utf8")).entries[2].pin).toBe(false);
  });

  it("a restart of apikeyd with a saved output: the driver gets the saved value first", async () => {
    const stateDir = await tempDir();
    const first = await startIo([SCRIPTED], { stateDir });
    await ready(first);
    expect((await call(first.ts, "PUT", "/api/v1/data/entries/2/pin", { ...KEYS, body: "pin=false" })).status).toBe(200);
    expect((await call(first.ts, "PUT", "/api/v1/data/entries/1/pin", { ...KEYS, body: "pin=50" })).status).toBe(200);
    await first.io.stop();
    await first.ts.stop();
    const second = await startIo([SCRIPTED], { stateDir, record: true });
    await waitFor("the initial values", () => (changes(second).length >= 2 ? true : undefined));
    // RELAY is saved (process entry 2 has save true), PWM LED is not: it starts from its factory value.
    expect(changes(second).map(({ entry, pin }) => ({ entry, pin }))).toEqual([
      { entry: 1, pin: 0.004 },
      { entry: 2, pin: false },
    ]);
  });
});

describe("a driver that misbehaves cannot hurt the server", () => {
  it("garbage and half lines are counted and logged within bounds, never trusted; a line finished later counts", async () => {
    const s = await startIo([SCRIPTED, "--garbage"]);
    await waitFor("the finished half line", async () => ((await data(s.ts)).entries[0]?.pin === 1.5 ? true : undefined));
    expect(s.io.counters.invalidLines).toBe(21);
    expect(s.io.counters.unknownAcks).toBe(1);
    const d = await data(s.ts);
    expect(d.entries[2]?.pin).toBe(true); // an output's value is never taken from a report
    expect(d.entries[3]?.pin).toBe(false); // the unfinished last line is not taken
    const ignored = s.logLines.filter((l) => l.includes("I/O driver line ignored"));
    expect(ignored.length).toBeGreaterThan(0);
    expect(ignored.length).toBeLessThanOrEqual(20);
    expect(s.logLines.join("\n")).not.toMatch(/[\u0000\u001b\u202e]/);
    expect(s.logLines.join("\n")).not.toContain("xxxxxxxx");
  });

  it("a flood of reports: reads are still answered promptly, and take in the latest values", async () => {
    const s = await startIo([SCRIPTED, "--flood"]);
    await waitFor("the flood", async () => (typeof (await data(s.ts)).entries[0]?.pin === "number" && (await data(s.ts)).entries[0]?.pin !== 347 ? true : undefined));
    const latencies: number[] = [];
    const values = new Set<unknown>();
    for (let i = 0; i < 40; i++) {
      const t = performance.now();
      const a = await call(s.ts, "GET", "/api/v1/data/entries/0/pin", KEYS);
      latencies.push(performance.now() - t);
      values.add(a.json?.data);
    }
    latencies.sort((a, b) => a - b);
    expect(latencies[Math.floor(latencies.length * 0.9)]).toBeLessThan(100);
    // The flood keeps flowing in (on a loaded machine the driver may not write during the sample).
    const last = [...values].at(-1);
    await waitFor("a newer value", async () => ((await call(s.ts, "GET", "/api/v1/data/entries/0/pin", KEYS)).json?.data !== last ? true : undefined));
    // A write still gets through the flood.
    expect((await call(s.ts, "PUT", "/api/v1/data/entries/1/pin", { ...KEYS, body: "pin=3" })).text).toBe(ok(3));
    expect(s.io.counters.invalidLines).toBe(0);
  });

  it("standard error goes to the log, bounded", async () => {
    const s = await startIo([SCRIPTED, "--stderr-flood"]);
    await waitFor("some stderr", () => (s.logLines.some((l) => l.includes("noise 0")) ? true : undefined));
    await new Promise((r) => setTimeout(r, 300));
    const said = s.logLines.filter((l) => l.includes("I/O driver says"));
    expect(said.length).toBeGreaterThanOrEqual(50);
    expect(said.length).toBeLessThan(100);
  });
});

describe("pulse outputs", () => {
  it("a digital output with pulse > 0 returns to false after pulse units, through the driver, saved", async () => {
    // RELAY: pulse 10, save true; the unit is 100 ms, 10 ms here.
    const s = await startIo([SCRIPTED], { record: true, io: { pulseUnitMs: 10 } });
    await ready(s);
    // At start RELAY is true (factory): its pulse runs out too.
    await waitFor("the start's pulse", async () => ((await data(s.ts)).entries[2]?.pin === false ? true : undefined), 2_000);
    expect((await call(s.ts, "PUT", "/api/v1/data/entries/2/pin", { ...KEYS, body: "pin=true" })).text).toBe(ok(true));
    const set = Date.now();
    await waitFor("the pulse's end", async () => ((await data(s.ts)).entries[2]?.pin === false ? true : undefined), 2_000);
    expect(Date.now() - set).toBeGreaterThanOrEqual(90);
    const sent = changes(s).filter((c) => c.entry === 2).map((c) => c.pin);
    expect(sent).toEqual([true, false, true, false]);
    expect(JSON.parse(await readFile(join(s.ts.stateDir, "data.json"), "utf8")).entries[2].pin).toBe(false);
  });
});
