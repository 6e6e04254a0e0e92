/** Shared test fixtures: a real server on port 0 with its own temp state folder, and an undici client. */

import { execFileSync, spawnSync } from "node:child_process";
import { cp, mkdtemp, readFile, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Agent, request, type Dispatcher } from "undici";
import { type Device } from "../src/state/device.ts";
import { loadDevice, type LoadOptions } from "../src/state/load-device.ts";
import { createServer, stopServer, type ServerOptions } from "../src/http/server.ts";
import type { Server } from "node:http";

/** The factory config folder of the repository (read-only in tests). */
export const CONFIG_DIR = resolve(__dirname, "..", "device-config");
export const ROOT_DIR = resolve(__dirname, "..");

const cleanups: Array<() => Promise<void>> = [];

/** Removes every temp folder and server made by the helpers; call from afterEach. */
export async function cleanup(): Promise<void> {
  while (cleanups.length > 0) await (cleanups.pop() as () => Promise<void>)();
}

/** Registers something for cleanup() to undo (it runs before what was registered earlier). */
export function deferCleanup(undo: () => Promise<void>): void {
  cleanups.push(undo);
}

/** Polls `check` every few ms until it returns a value other than undefined; throws after `ms`. */
export async function waitFor<T>(what: string, check: () => T | undefined | Promise<T | undefined>, ms = 5_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`waited ${ms} ms for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A fresh temp folder, removed by cleanup(). */
export async function tempDir(prefix = "apikeyd-test-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A private copy of device-config/ that a test may change. */
export async function copyConfig(): Promise<string> {
  const dir = await tempDir("apikeyd-config-");
  await cp(CONFIG_DIR, dir, { recursive: true });
  return dir;
}

/** A running server. */
export interface TestServer {
  readonly origin: string;
  readonly port: number;
  readonly configDir: string;
  readonly stateDir: string;
  readonly device: Device;
  readonly server: Server;
  /** Stops the server (as SIGTERM would) and its client. */
  stop(): Promise<void>;
}

export interface StartOptions {
  readonly configDir?: string;
  readonly stateDir?: string;
  readonly server?: ServerOptions;
  readonly load?: Partial<LoadOptions>;
  readonly host?: string;
  /** More server options, made from the loaded device (an I/O driver's gate). */
  readonly withDevice?: (device: Device) => ServerOptions;
}

/** Starts the real server on 127.0.0.1, port 0, with a fresh temp state folder unless one is given. */
export async function startServer(options: StartOptions = {}): Promise<TestServer> {
  const configDir = options.configDir ?? CONFIG_DIR;
  const stateDir = options.stateDir ?? (await tempDir("apikeyd-state-"));
  const device = await loadDevice({ configDir, stateDir, ...options.load });
  const server = createServer(device, { ...options.server, ...options.withDevice?.(device) });
  await new Promise<void>((done) => server.listen(0, options.host ?? "127.0.0.1", done));
  const port = (server.address() as AddressInfo).port;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await stopServer(server, 1_000);
    await device.close();
  };
  cleanups.push(stop);
  return { origin: `http://${options.host ?? "127.0.0.1"}:${port}`, port, configDir, stateDir, device, server, stop };
}

/** What a request answered, body read whole. */
export interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
  /** The parsed envelope (undefined for an empty body, e.g. HEAD, and for a page of the homepage). */
  readonly json: { meta: { error: number; message: string }; data: unknown } | undefined;
}

export interface CallOptions {
  readonly rd?: string;
  readonly wr?: string;
  /** A form body (string, sent as application/x-www-form-urlencoded unless contentType says otherwise) or an object sent as JSON. */
  readonly body?: string | Record<string, unknown>;
  readonly contentType?: string;
  readonly headers?: Record<string, string>;
  /** Any undici dispatcher, e.g. a Client to pin requests to one keep-alive connection. */
  readonly dispatcher?: Dispatcher;
  readonly localAddress?: string;
}

const agents = new Map<string, Agent>();

function agentFor(localAddress: string | undefined): Agent {
  const key = localAddress ?? "";
  let agent = agents.get(key);
  if (agent === undefined) {
    // undici takes the source address at the top level; under `connect` it is silently overridden.
    agent = new Agent(localAddress === undefined ? {} : { localAddress });
    agents.set(key, agent);
  }
  return agent;
}

/** Closes the shared agents (afterAll). */
export async function closeAgents(): Promise<void> {
  await Promise.all([...agents.values()].map((a) => a.close()));
  agents.clear();
}

/** One request against a test server; every body is consumed. */
export async function call(ts: { origin: string }, method: string, path: string, options: CallOptions = {}): Promise<Answer> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.rd !== undefined) headers["ApiRdKey"] = options.rd;
  if (options.wr !== undefined) headers["ApiWrKey"] = options.wr;
  let body: string | undefined;
  if (typeof options.body === "string") {
    body = options.body;
    headers["Content-Type"] = options.contentType ?? "application/x-www-form-urlencoded";
  } else if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers["Content-Type"] = options.contentType ?? "application/json";
  }
  const res = await request(ts.origin + path, {
    method: method as "GET",
    headers,
    body,
    dispatcher: options.dispatcher ?? agentFor(options.localAddress),
  });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    headers: res.headers as Record<string, string | string[] | undefined>,
    text,
    // Pages of the homepage are HTML: only the API's envelope is parsed.
    json: text === "" || res.headers["content-type"] !== "application/json" ? undefined : (JSON.parse(text) as Answer["json"]),
  };
}

/** The exact envelope text of a success. */
export function ok(data: unknown): string {
  return `{"meta":{"error":0,"message":"JSON_ERROR_NONE"},"data":${JSON.stringify(data)}}`;
}

/** The exact envelope text of a failure. */
export function failure(code: number, message: string, detail?: string): string {
  const more = detail === undefined ? "" : `,"detail":${JSON.stringify(detail)}`;
  return `{"meta":{"error":${code},"message":"${message}"${more}},"data":null}`;
}

/**
 * An error envelope without its `meta.detail`, for the tests that check the code, the message and
 * `data` (test/error-details.test.ts checks every detail). It first checks that the detail, if any,
 * is a sentence in its place: a string, right after `message`, in the exact serialization.
 */
export function withoutDetail(text: string): string {
  let envelope: unknown;
  try {
    envelope = JSON.parse(text);
  } catch {
    return text;
  }
  const meta = (envelope as { meta?: { error?: unknown; message?: unknown; detail?: unknown } } | null)?.meta;
  if (meta === undefined || meta.detail === undefined) return text;
  if (typeof meta.detail !== "string" || meta.detail === "") throw new Error(`meta.detail is not a sentence: ${text}`);
  const bare = failure(meta.error as number, meta.message as string);
  if (text !== failure(meta.error as number, meta.message as string, meta.detail)) throw new Error(`not the envelope with a detail: ${text}`);
  return bare;
}

/** Builds dist/ unless it is up to date (npm test has already built it; a lone vitest run may not have). */
export function ensureBuilt(): void {
  execFileSync(process.execPath, [join(ROOT_DIR, "scripts", "build.mjs"), "--if-needed"]);
}

/**
 * The seed of the index-th of several generators drawn from one base seed (a fuzz worker, a crash
 * round): each gets its own sequence, the same for the same base seed whatever the scheduling.
 */
export function deriveSeed(base: number, index: number): number {
  return Math.floor(seededRandom((base ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0)() * 2 ** 32);
}

/** mulberry32: a small seeded PRNG; the same seed gives the same sequence, so a failing run can be replayed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Whether a test that needs a tool (or root) should be skipped for want of it: never under CI,
 * where `.ci/run` installs every tool, so that a missing one fails instead of passing unseen.
 */
export function lacks(present: boolean): boolean {
  return !present && !IN_CI;
}

/** Whether this run is CI's (`CI=true`): every tool a test needs is then required, never skipped for. */
export const IN_CI = process.env["CI"] === "true";

/** Whether openssl is there to make throwaway certificates (.ci/run installs it). */
export const HAS_OPENSSL = spawnSync("openssl", ["version"]).status === 0;

/** A throwaway certificate made with openssl: one day, EC P-256, for 127.0.0.1; files and PEM text. */
export interface ThrowawayCertificate {
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: string;
  readonly key: string;
}

/** Makes a throwaway self-signed certificate for 127.0.0.1 in a temp folder (removed by cleanup()). */
export async function throwawayCertificate(name = "cert"): Promise<ThrowawayCertificate> {
  const dir = await tempDir("apikeyd-tls-");
  const certFile = join(dir, `${name}.pem`);
  const keyFile = join(dir, `${name}-key.pem`);
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
    "-subj", `/CN=${name}`, "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", keyFile, "-out", certFile,
  ], { stdio: "ignore" });
  return { certFile, keyFile, cert: await readFile(certFile, "utf8"), key: await readFile(keyFile, "utf8") };
}

/** A state folder seeded by a first start on the factory config (removed by cleanup()). */
export async function seededState(): Promise<string> {
  const stateDir = await tempDir("apikeyd-state-");
  await loadDevice({ configDir: CONFIG_DIR, stateDir });
  return stateDir;
}

/** Waits, bounded, until `condition` holds (polling every 20 ms); throws naming `what` otherwise. */
export async function until(what: string, condition: () => boolean | Promise<boolean>, limitMs = 10_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`still not true after ${limitMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** An answer's text with every pair's last use blanked: it moves with each request a pair lets in (docs/api.md §8). */
export function withoutLastUse(text: string): string {
  return text.replace(/"lastUsed":\d+,"lastUsedFrom":"[^"]*"/g, '"lastUsed":-');
}
