/**
 * scripts/io/gpio.mjs, the Raspberry Pi driver, against stand-ins of libgpiod 1.6's gpioget,
 * gpioset and gpiomon put first on PATH (test/io-drivers/gpio-bin/): no real GPIO line is met here.
 * The stand-ins keep line values in files of a temp folder.
 */

import { existsSync, readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { SILENT } from "../src/common/log.ts";
import { IoBridge } from "../src/io/io-bridge.ts";
import { call, cleanup, closeAgents, deferCleanup, failure, ok, ROOT_DIR, startServer, tempDir, waitFor, type TestServer } from "./helpers.ts";

afterEach(cleanup);
afterAll(closeAgents);

const KEYS = { rd: "rdKey7", wr: "wrKey7" };
const STANDINS = join(ROOT_DIR, "test", "io-drivers", "gpio-bin");

async function startGpio(map: string, lines: Record<string, string> = {}): Promise<{ ts: TestServer; dir: string; io: IoBridge }> {
  const dir = await tempDir("apikeyd-gpio-");
  await writeFile(join(dir, "gpio.map"), map);
  for (const [name, value] of Object.entries(lines)) await writeFile(join(dir, name), value);
  let io: IoBridge | undefined;
  const ts = await startServer({
    withDevice: (device) => {
      io = new IoBridge(device, {
        argv: [process.execPath, join(ROOT_DIR, "scripts", "io", "gpio.mjs"), "--map", join(dir, "gpio.map")],
        timeoutMs: 2_000,
        log: SILENT,
        // RELAY's pulse (10) is out of the way here; pulses have their own test.
        pulseUnitMs: 1_000_000,
        env: { PATH: `${STANDINS}:${process.env["PATH"] ?? ""}`, GPIO_STANDIN_DIR: dir },
      });
      io.start();
      return { outputs: io };
    },
  });
  const bridge = io as unknown as IoBridge;
  deferCleanup(() => bridge.stop());
  return { ts, dir, io: bridge };
}

const entries = async (ts: TestServer): Promise<{ pin: unknown; error: number }[]> => ((await call(ts, "GET", "/api/v1/data", KEYS)).json?.data as { entries: never }).entries;
const file = (dir: string, name: string): string | undefined => (existsSync(join(dir, name)) ? readFileSync(join(dir, name), "utf8").trim() : undefined);

describe("the GPIO driver (libgpiod tools)", () => {
  it("reads inputs with gpioget then gpiomon, holds outputs with gpioset, and marks what it cannot drive", async () => {
    const { ts, dir } = await startGpio("# pin chip line\nXB.4  gpiochip0 17\nXB.6\tgpiochip0 27   # the input\n", { "gpiochip0-27": "1" });
    // The input's value at start, and the saved RELAY value (true) driven on its line.
    await waitFor("the input", async () => ((await entries(ts))[3]?.pin === true ? true : undefined));
    await waitFor("the output", () => (file(dir, "gpiochip0-17.out") === "1" ? true : undefined));
    const e = await waitFor("the unmapped points' errors", async () => {
      const now = await entries(ts);
      return now[0]?.error === 1 && now[1]?.error === 1 && now[2]?.error === 0 ? now : undefined;
    });
    expect(e[3]).toMatchObject({ pin: true, error: 0 });
    // An edge on the input reaches data through gpiomon.
    await waitFor("gpiomon", () => (file(dir, "calls")?.includes("gpiomon") === true ? true : undefined));
    await writeFile(join(dir, "gpiochip0-27"), "0");
    await waitFor("the edge", async () => ((await entries(ts))[3]?.pin === false ? true : undefined));
    // An output change replaces the gpioset that holds the line.
    expect((await call(ts, "PUT", "/api/v1/data/entries/2/pin", { ...KEYS, body: "pin=false" })).text).toBe(ok(false));
    expect(file(dir, "gpiochip0-17.out")).toBe("0");
    const calls = readFileSync(join(dir, "calls"), "utf8").split("\n");
    expect(calls).toContain("gpioget gpiochip0 27");
    expect(calls).toContain("gpiomon -b --format=%o %e gpiochip0 27");
    expect(calls).toContain("gpioset --mode=signal gpiochip0 17=1");
    expect(calls).toContain("gpioset --mode=signal gpiochip0 17=0");
    // An analog output it cannot drive: refused, 18.
    expect((await call(ts, "PUT", "/api/v1/data/entries/1/pin", { ...KEYS, body: "pin=5" })).text).toBe(failure(18, "JSON_ERROR_IO", "the I/O driver refused this value, so the output was not changed"));
  });

  it("active-low lines, and a gpioset that fails: the change is refused (18) and the point shows error 2", async () => {
    const { ts, dir } = await startGpio("XB.4 nochip 17\nXB.6 gpiochip0 27 active-low\n", { "gpiochip0-27": "1" });
    await waitFor("the active-low input", async () => ((await entries(ts))[3]?.error === 0 ? true : undefined));
    expect((await entries(ts))[3]?.pin).toBe(false);
    expect(readFileSync(join(dir, "calls"), "utf8")).toContain("gpioget -l gpiochip0 27");
    await waitFor("the failed output", async () => ((await entries(ts))[2]?.error === 2 ? true : undefined));
    expect((await call(ts, "PUT", "/api/v1/data/entries/2/pin", { ...KEYS, body: "pin=false" })).text).toBe(failure(18, "JSON_ERROR_IO", "the I/O driver refused this value, so the output was not changed"));
  });
});
