/**
 * The crash harness: the built server as a child process, clients writing their own members
 * concurrently and recording what was acknowledged, SIGKILL at a random moment, restart on the same
 * state folder, and a check that every acknowledged value (or the later one that was in flight) is
 * there. Random choices come from a seeded generator so that a failure can be replayed.
 */

import { spawn, type ChildProcess } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { Agent, request } from "undici";
import { isTempFileName } from "../src/state/store.ts";
import { CONFIG_DIR, ROOT_DIR } from "./helpers.ts";

export const SERVER_BUNDLE = join(ROOT_DIR, "dist", "apikeyd.js");

/** One member that one client owns. */
export interface Slot {
  readonly endpoint: string;
  /** Path of the member below the endpoint, e.g. "mqtt/user". */
  readonly member: string;
  readonly rd: string;
  readonly wr: string;
  /** The body value of the client's n-th write in round r. */
  value(n: number, round: number): string;
  /** That value as the server answers it. */
  json(text: string): unknown;
  /** The value after a first start. */
  readonly initial: unknown;
  /** Live state (docs/api.md §6): back at `initial` after every restart, whatever was acknowledged. */
  readonly volatile?: boolean;
}

const text = (t: string): unknown => t;
const int = (t: string): unknown => Number(t);
const bool = (t: string): unknown => t === "true";
const ipv4 = (n: number): string => `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;

/**
 * Twelve clients: several on `properties` and two each on `process` and `data` (distinct members of
 * one document), the others alone on theirs.
 */
export const SLOTS: readonly Slot[] = [
  { endpoint: "properties", member: "name", rd: "rdKey1", wr: "wrKey1", value: (n) => `name-${n}`, json: text, initial: "eNetMini1" },
  { endpoint: "properties", member: "mqtt/user", rd: "rdKey1", wr: "wrKey1", value: (n) => `user-${n}`, json: text, initial: "user_mqtt" },
  { endpoint: "properties", member: "mqtt/port", rd: "rdKey1", wr: "wrKey1", value: (n) => String(1024 + (n % 64000)), json: int, initial: 1883 },
  {
    endpoint: "properties",
    member: "networkInterfaces/0/hostEntries/0/address",
    rd: "rdKey1",
    wr: "wrKey1",
    value: (n) => ipv4(n),
    json: text,
    initial: "192.168.15.100",
  },
  { endpoint: "properties", member: "sntpEntries/0/address", rd: "rdKey1", wr: "wrKey1", value: (n) => ipv4(n + 7), json: text, initial: "192.168.15.90" },
  { endpoint: "process", member: "entries/0/name", rd: "rdKey6", wr: "wrKey6", value: (n) => `AIN ${n}`, json: text, initial: "AIN" },
  { endpoint: "process", member: "entries/2/pulse", rd: "rdKey6", wr: "wrKey6", value: (n) => String(n), json: int, initial: 10 },
  { endpoint: "httpro", member: "pass", rd: "rdKey3", wr: "wrKey3", value: (n) => `secret-${n}`, json: text, initial: "pass_ro" },
  { endpoint: "httprw", member: "name", rd: "rdKey4", wr: "wrKey4", value: (n) => `rw-${n}`, json: text, initial: "user_rw" },
  // The write key of the httpsu pair: the key file itself, which no client here needs.
  { endpoint: "apikeys", member: "keys/4/wr", rd: "rdKey2", wr: "wrKey2", value: (n) => `wr-su-${n}`, json: text, initial: "wrKey5" },
  // RELAY has save true: its value is kept. One value per round, so that a boolean still tells rounds apart.
  { endpoint: "data", member: "entries/2/pin", rd: "rdKey7", wr: "wrKey7", value: (_n, round) => String(round % 2 === 1), json: bool, initial: true },
  { endpoint: "data", member: "entries/1/pin", rd: "rdKey7", wr: "wrKey7", value: (n) => `${n}.5`, json: Number, initial: 0.004, volatile: true },
];

/** The server as a child process. */
export interface Child {
  readonly origin: string;
  readonly process: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Its standard error so far (the log: no keys, no bodies). */
  readonly log: string[];
}

const START_TIMEOUT_MS = 15_000;

/** Starts `node dist/apikeyd.js` on 127.0.0.1, any port, and resolves once it listens. */
export function startChild(stateDir: string): Promise<Child> {
  const child = spawn(
    process.execPath,
    [SERVER_BUNDLE, "--host", "127.0.0.1", "--port", "0", "--state-dir", stateDir, "--config-dir", CONFIG_DIR],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  const log: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  return new Promise<Child>((resolve, reject) => {
    let pending = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the server did not start within ${START_TIMEOUT_MS} ms:\n${log.join("\n")}`));
    }, START_TIMEOUT_MS);
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      pending += chunk;
      let end: number;
      while ((end = pending.indexOf("\n")) !== -1) {
        const line = pending.slice(0, end);
        pending = pending.slice(end + 1);
        log.push(line);
        const match = /listening url=(http:\/\/127\.0\.0\.1:\d+)/.exec(line);
        if (match !== null) {
          clearTimeout(timer);
          resolve({ origin: match[1] as string, process: child, exited, log });
        }
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (code ${code}, signal ${signal}) before listening:\n${log.join("\n")}`));
    });
  });
}

/** What one client knows of its member. */
export interface ClientRecord {
  readonly slot: Slot;
  /** The last acknowledged value (as answered), or the value found after the last restart. */
  acked: unknown;
  /** A value sent whose answer never came (the server was killed). */
  inFlight: unknown;
  n: number;
  acks: number;
}

export function newRecords(): ClientRecord[] {
  return SLOTS.map((slot) => ({ slot, acked: slot.initial, inFlight: undefined, n: 0, acks: 0 }));
}

function envelope(data: unknown): string {
  return `{"meta":{"error":0,"message":"JSON_ERROR_NONE"},"data":${JSON.stringify(data)}}`;
}

/**
 * Runs one client until the server dies: PUT after PUT of fresh values, each recorded as
 * acknowledged once its 200 has been read whole. Any other answer, or an error before the kill, fails.
 */
export async function runClient(
  record: ClientRecord,
  origin: string,
  agent: Agent,
  round: number,
  state: { killed: boolean; onAck: () => void },
): Promise<void> {
  const { slot } = record;
  const url = `${origin}/api/v1/${slot.endpoint}/${slot.member}`;
  const leaf = slot.member.slice(slot.member.lastIndexOf("/") + 1);
  while (!state.killed) {
    const value = slot.value(++record.n, round);
    const expected = slot.json(value);
    record.inFlight = expected;
    let status: number;
    let body: string;
    try {
      const res = await request(url, {
        method: "PUT",
        headers: { ApiRdKey: slot.rd, ApiWrKey: slot.wr, "Content-Type": "application/x-www-form-urlencoded" },
        body: `${leaf}=${encodeURIComponent(value)}`,
        dispatcher: agent,
      });
      status = res.statusCode;
      body = await res.body.text();
    } catch (error) {
      if (state.killed) return; // the answer never came: the value stays in flight
      throw new Error(`PUT ${slot.endpoint}/${slot.member} failed before the kill: ${(error as Error).message}`);
    }
    if (status !== 200 || body !== envelope(expected)) {
      throw new Error(`PUT ${slot.endpoint}/${slot.member}=${value} answered ${status} ${body}`);
    }
    record.acked = expected;
    record.inFlight = undefined;
    record.acks++;
    state.onAck();
  }
}

/** Reads one member from a running server. */
export async function readMember(origin: string, agent: Agent, slot: Slot): Promise<unknown> {
  const res = await request(`${origin}/api/v1/${slot.endpoint}/${slot.member}`, {
    headers: { ApiRdKey: slot.rd },
    dispatcher: agent,
  });
  const body = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`GET ${slot.endpoint}/${slot.member} answered ${res.statusCode} ${body}`);
  return (JSON.parse(body) as { data: unknown }).data;
}

/** The state folder as a crash left it: temporary files, and every state file parsed (or the reason not). */
export async function inspectStateFolder(stateDir: string): Promise<{ temps: string[]; unreadable: string[] }> {
  const names = await readdir(stateDir);
  const unreadable: string[] = [];
  for (const name of names.filter((n) => n.endsWith(".json") && !n.startsWith("."))) {
    try {
      JSON.parse(await readFile(join(stateDir, name), "utf8"));
    } catch (error) {
      unreadable.push(`${name}: ${(error as Error).message}`);
    }
  }
  return { temps: names.filter(isTempFileName), unreadable };
}
