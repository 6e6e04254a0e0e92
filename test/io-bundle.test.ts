/**
 * The I/O driver as users run it: the bundle with --io-driver. The README's demo ("Connecting the
 * hardware") run as written, and kill -9 of apikeyd: the driver does not outlive it, and the next
 * start gives the next driver the saved outputs first.
 */

import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { splitCommand } from "../src/io/protocol.ts";
import { killServers, startCli } from "./cli-harness.ts";
import { call, cleanup, closeAgents, ensureBuilt, ROOT_DIR, tempDir, waitFor } from "./helpers.ts";

const run = promisify(execFile);
const README = readFileSync(join(ROOT_DIR, "README.md"), "utf8");

beforeAll(ensureBuilt);
afterEach(async () => {
  killServers();
  await cleanup();
});
afterAll(closeAgents);

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("the README's demo", () => {
  it("npm start -- --io-driver \"node scripts/io/simulator.mjs\": curl reads inputs that move", async () => {
    const section = README.slice(README.indexOf("\n## Connecting the hardware\n"));
    const start = /^npm start -- (.*)$/m.exec(section)?.[1];
    const curl = /^\$ (curl .*)$/m.exec(section)?.[1];
    expect(start, "the demo's npm start line").toBeDefined();
    expect(curl, "the demo's curl line").toBeDefined();
    const server = await startCli(["--state-dir", await tempDir(), ...splitCommand(start as string)]);
    const read = async (): Promise<unknown> => {
      const { stdout } = await run("sh", ["-c", (curl as string).replaceAll("http://localhost:8080", server.origin)]);
      return JSON.parse(stdout);
    };
    const first = await waitFor("a reported value", async () => {
      const answer = (await read()) as { meta: { error: number }; data: unknown };
      return answer.meta.error === 0 && answer.data !== 347 ? answer : undefined;
    });
    const moved = await waitFor("the value to move", async () => {
      const answer = (await read()) as { data: unknown };
      return answer.data !== first.data ? answer : undefined;
    });
    expect(typeof moved.data).toBe("number");
  });
});

describe("kill -9", () => {
  it("of apikeyd: its driver exits too; the next start is served, and its driver gets the saved output first", async () => {
    const stateDir = await tempDir();
    const record = join(await tempDir(), "received.txt");
    const driver = `node test/io-drivers/scripted.mjs --record ${record}`;
    const first = await startCli(["--state-dir", stateDir, "--io-driver", driver]);
    const pid = Number((await first.waitForLog(/I\/O driver started program=node pid=(\d+)/))[1]);
    await waitFor("the start's values", () => (existsSync(record) && readFileSync(record, "utf8").split("\n").length > 3 ? true : undefined));
    const put = await call(first, "PUT", "/api/v1/data/entries/2/pin", { rd: "rdKey7", wr: "wrKey7", body: "pin=false" });
    expect(put.status).toBe(200);
    expect(await first.stop("SIGKILL")).toBe(null);
    await waitFor("the orphaned driver to exit", () => (alive(pid) ? undefined : true), 3_000);

    const second = await startCli(["--state-dir", stateDir, "--io-driver", driver]);
    const secondRun = (): string[] => (readFileSync(record, "utf8").split("start ")[2] ?? "").trim().split("\n").slice(1);
    await waitFor("the second driver's values", () => (secondRun().length >= 2 ? true : undefined));
    const afterRestart = secondRun().map((l) => JSON.parse(l) as { entry: number; pin: unknown });
    expect(afterRestart?.map(({ entry, pin }) => ({ entry, pin }))).toEqual([
      { entry: 1, pin: 0.004 },
      { entry: 2, pin: false },
    ]);
    expect((await call(second, "GET", "/api/v1/data/entries/2/pin", { rd: "rdKey7" })).json?.data).toBe(false);
    expect(await second.stop("SIGTERM")).toBe(0);
  });
});
