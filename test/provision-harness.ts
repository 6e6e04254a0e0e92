/** Fixtures for the provisioning tool's tests: fleets of real servers and the built tool as a child process. */

import { spawn, type ChildProcess } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { createServer as createNetServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import type { Dispatcher } from "undici";
import { expect } from "vitest";
import { InventoryError, parseInventory } from "../src/provision/inventory.ts";
import { DEFAULT_THROTTLE, type ThrottleOptions } from "../src/access/throttle.ts";
import { fingerprint } from "../src/access/keys.ts";
import { call, ROOT_DIR, startServer, type TestServer } from "./helpers.ts";

/** The built tool. */
export const TOOL = join(ROOT_DIR, "dist", "provision.js");

/** The factory pairs (docs/api.md §1), by endpoint. */
export const FACTORY: Readonly<Record<string, { rd: string; wr: string }>> = {
  properties: { rd: "rdKey1", wr: "wrKey1" },
  apikeys: { rd: "rdKey2", wr: "wrKey2" },
  httpro: { rd: "rdKey3", wr: "wrKey3" },
  httprw: { rd: "rdKey4", wr: "wrKey4" },
  httpsu: { rd: "rdKey5", wr: "wrKey5" },
  process: { rd: "rdKey6", wr: "wrKey6" },
  data: { rd: "rdKey7", wr: "wrKey7" },
};

/** A throttle that the tests' own deliberate wrong keys never reach. */
export const ROOMY_THROTTLE: ThrottleOptions = { ...DEFAULT_THROTTLE, maxFailures: 100_000 };
/** What the tool is told of ROOMY_THROTTLE. */
export const ROOMY_FLAG = ["--device-throttle", "100000/60"];

/** Starts `n` devices with factory keys, each with its own state folder. */
export async function startFleet(n: number, throttle: ThrottleOptions = ROOMY_THROTTLE): Promise<TestServer[]> {
  return Promise.all(Array.from({ length: n }, () => startServer({ server: { throttle } })));
}

/** The inventory's name for a test server. */
export const hostOf = (ts: TestServer): string => `127.0.0.1:${ts.port}`;

/** A loopback port where nothing listens. */
export async function closedPort(): Promise<number> {
  const probe = createNetServer();
  await new Promise<void>((done) => probe.listen(0, "127.0.0.1", done));
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((done) => probe.close(() => done()));
  return port;
}

/** How a run of the tool ended. */
export interface ToolRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Starts the tool (`env` added to the tests' environment); `exited` resolves with its output once it ends. */
export function spawnTool(args: readonly string[], cwd: string, env: Record<string, string> = {}): { child: ChildProcess; exited: Promise<ToolRun> } {
  const child = spawn(process.execPath, [TOOL, ...args], { cwd, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<ToolRun>((resolve) => child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, exited };
}

/** Runs the tool to its end. */
export function runTool(args: readonly string[], cwd: string, env: Record<string, string> = {}): Promise<ToolRun> {
  return spawnTool(args, cwd, env).exited;
}

/** Writes an inventory file and returns its path. */
export async function writeInventory(dir: string, inventory: unknown, name = "devices.json"): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, typeof inventory === "string" ? inventory : JSON.stringify(inventory));
  return path;
}

/** Keys by host and endpoint, as the output file holds them. */
export type Secrets = Record<string, Record<string, { rd: string; wr: string }>>;

export async function readSecrets(path: string): Promise<Secrets> {
  return JSON.parse(await readFile(path, "utf8")) as Secrets;
}

/**
 * Checks a device against its entry in the output file: its pairs are exactly those keys, every
 * endpoint reads with the new read key and refuses the factory one, and no key is a factory key.
 * `via` reaches a device over HTTPS: its https:// origin and a dispatcher that trusts its certificate.
 */
export async function expectDeviceHolds(
  device: TestServer,
  keys: Record<string, { rd: string; wr: string }> | undefined,
  via: { origin: string; dispatcher: Dispatcher } | undefined = undefined,
): Promise<void> {
  const ts = { origin: via?.origin ?? device.origin };
  const dispatcher = via?.dispatcher;
  expect(keys).toBeDefined();
  const entry = keys as Record<string, { rd: string; wr: string }>;
  expect(Object.keys(entry).sort()).toEqual(Object.keys(FACTORY).sort());
  const doc = await call(ts, "GET", "/api/v1/apikeys", { rd: entry["apikeys"]?.rd ?? "", dispatcher });
  expect(doc.status).toBe(200);
  const { keys: pairs, sealed } = doc.json?.data as { keys: Array<{ name: string; rd: string; wr: string }>; sealed?: boolean };
  // A sealed device (docs/api.md §9) shows each key as sealed:<fingerprint>, keyed by its own secret.
  const shown = (key: string): string => (sealed === true && key !== "" ? `sealed:${fingerprint(key, device.device.fingerprintSecret)}` : key);
  expect(Object.fromEntries(pairs.map((p) => [p.name, { rd: p.rd, wr: p.wr }]))).toEqual(
    Object.fromEntries(Object.entries(entry).map(([name, p]) => [name, { rd: shown(p.rd), wr: shown(p.wr) }])),
  );
  for (const [endpoint, pair] of Object.entries(entry)) {
    expect((await call(ts, "GET", `/api/v1/${endpoint}`, { rd: pair.rd, dispatcher })).status).toBe(200);
    const factory = FACTORY[endpoint] as { rd: string; wr: string };
    expect((await call(ts, "GET", `/api/v1/${endpoint}`, { rd: factory.rd, dispatcher })).status).toBe(401);
    expect([pair.rd, pair.wr]).not.toContain(factory.rd);
    expect([pair.rd, pair.wr]).not.toContain(factory.wr);
  }
}

/** Every key of an output file, for checking that none leaked into the tool's output. */
export function allKeys(secrets: Secrets): string[] {
  return Object.values(secrets).flatMap((device) => Object.values(device).flatMap((p) => [p.rd, p.wr]));
}

/** The message with which an inventory text is refused (the test fails if it is accepted). */
export function inventoryRefusal(text: string): string {
  try {
    parseInventory(text);
  } catch (error) {
    expect(error).toBeInstanceOf(InventoryError);
    return (error as Error).message;
  }
  throw new Error("accepted");
}
