// A seeded fuzz test: valid requests mutated (bytes flipped, inserted, deleted; header lines
// repeated; lengths changed; requests cut or run together), sent over raw sockets. Every byte the
// server answers must be a well-formed HTTP/1.1 answer carrying our envelope; it never fails
// internally, never exits, and the key store is intact afterwards. Bounded in count and in time.
// Each of the concurrent workers has its own generator, seeded from the run's seed and the worker's
// number, so that a seed sends the same bytes whatever the scheduling (worker w's n-th request is
// always the same; the time bound may only cut a worker's sequence short). APIKEYD_FUZZ_SEED
// replays another seed; the seed is in the test's name and in the failure.

import { connect } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { CATALOGUE } from "../src/http/errors.ts";
import { DEFAULT_THROTTLE } from "../src/access/throttle.ts";
import { call, cleanup, closeAgents, deriveSeed, failure, ok, seededRandom, startServer, withoutDetail, withoutLastUse } from "./helpers.ts";

afterAll(async () => {
  await closeAgents();
  await cleanup();
});

const SEED = Number(process.env["APIKEYD_FUZZ_SEED"] ?? 20_260_523);
if (!Number.isInteger(SEED)) throw new Error(`APIKEYD_FUZZ_SEED=${process.env["APIKEYD_FUZZ_SEED"]}: a whole number is expected`);
const CONCURRENCY = 16;
/** 16 × 188: about 3,000 requests, which take one or two seconds; the time bound is a backstop. */
const REQUESTS_PER_WORKER = 188;
const MAX_WALL_MS = 10_000;
const FUZZ_ADDRESS = "127.0.0.9";

const form = (method: string, path: string, keys: string, body: string, type = "application/x-www-form-urlencoded"): string =>
  `${method} ${path} HTTP/1.1\r\nHost: device\r\n${keys}Content-Type: ${type}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
const get = (path: string, keys = ""): string => `GET ${path} HTTP/1.1\r\nHost: device\r\n${keys}\r\n`;
const K1 = "ApiRdKey: rdKey1\r\nApiWrKey: wrKey1\r\n";

/** Valid requests to start from. The apikeys write carries a wrong write key that no few edits turn right. */
const CORPUS: readonly string[] = [
  get("/api/v1/device"),
  get("/api/v1/device/0/board/pcb/name"),
  get("/api/v1/properties", "ApiRdKey: rdKey1\r\n"),
  get("/api/v1/properties/networkInterfaces/0/hostEntries/0/address", "ApiRdKey: rdKey1\r\n"),
  get("/api/v1/process/entries/1", "ApiRdKey: rdKey6\r\n"),
  get("/api/v1/data/Json%2BtypeName", "ApiRdKey: rdKey7\r\n"),
  get("/api/v1/apikeys/keys/0/name", "ApiRdKey: rdKey2\r\n"),
  form("PUT", "/api/v1/properties/name", K1, "name=fuzz"),
  form("PUT", "/api/v1/properties/mqtt", K1, "port=1884&enable=true&root=a%2Bb"),
  form("PUT", "/api/v1/properties/mqtt", K1, '{"keepalive":30,"user":"u"}', "application/json"),
  form("PUT", "/api/v1/data/entries/1", "ApiRdKey: rdKey7\r\nApiWrKey: wrKey7\r\n", "pin=0.5"),
  form("PUT", "/api/v1/apikeys/keys/6", "ApiRdKey: rdKey2\r\nApiWrKey: not-the-write-key-at-all\r\n", "rd=fuzzed-key"),
  `PUT /api/v1/properties/name HTTP/1.1\r\nHost: device\r\n${K1}Transfer-Encoding: chunked\r\n\r\n5\r\nname=\r\n3\r\nabc\r\n0\r\n\r\n`,
  `${get("/api/v1/device/0/address")}${get("/api/v1/properties/name", "ApiRdKey: rdKey1\r\n")}`,
];

const INTERESTING = [0x0d, 0x0a, 0x00, 0x20, 0x3a, 0x25, 0x2f, 0x2e, 0x09, 0x7f, 0xff, 0x2c, 0x3d, 0x26, 0x22];

/** One request mutated 1 to 3 times. */
function mutate(random: () => number, source: string): Buffer {
  const pick = (n: number): number => Math.floor(random() * n);
  let bytes = Buffer.from(source, "latin1");
  for (let round = 1 + pick(3); round > 0; round--) {
    const at = pick(bytes.length + 1);
    switch (pick(8)) {
      case 0: // flip a byte
        if (bytes.length > 0) {
          const i = Math.min(at, bytes.length - 1);
          bytes[i] = (bytes[i] as number) ^ (1 + pick(255));
        }
        break;
      case 1: {
        const byte = random() < 0.6 ? (INTERESTING[pick(INTERESTING.length)] as number) : pick(256);
        bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from([byte]), bytes.subarray(at)]);
        break;
      }
      case 2: // delete a byte or a run
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1 + (random() < 0.3 ? pick(20) : 0))]);
        break;
      case 3: {
        // repeat a header line
        const text = bytes.toString("latin1");
        const lines = text.split("\r\n");
        const end = lines.indexOf("");
        if (end > 1) {
          const i = 1 + pick(end - 1);
          lines.splice(i, 0, lines[i] as string);
          bytes = Buffer.from(lines.join("\r\n"), "latin1");
        }
        break;
      }
      case 4: {
        // change (or add) a Content-Length
        const lengths = ["-1", "0", "1", "5", "4097", "99999999999", "18446744073709551617", "abc", "", " 3", String(bytes.length)];
        const value = lengths[pick(lengths.length)] as string;
        const text = bytes.toString("latin1");
        const replaced = /Content-Length: [^\r\n]*/.test(text)
          ? text.replace(/Content-Length: [^\r\n]*/, `Content-Length: ${value}`)
          : text.replace("\r\n", `\r\nContent-Length: ${value}\r\n`);
        bytes = Buffer.from(replaced, "latin1");
        break;
      }
      case 5: // cut it short
        bytes = bytes.subarray(0, at);
        break;
      case 6: {
        // repeat a run of bytes
        const length = 1 + pick(40);
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at, at + length), bytes.subarray(at)]);
        break;
      }
      default: // run another request after it on the same connection
        bytes = Buffer.concat([bytes, Buffer.from(CORPUS[pick(CORPUS.length)] as string, "latin1")]);
    }
  }
  return bytes;
}

const BY_CODE = new Map(CATALOGUE.map((e) => [e.code, e]));

/**
 * Reads everything the server sent on one connection as a series of answers; returns the problems
 * found (empty when every answer is well-formed and carries a catalogue envelope) and the codes seen.
 */
function checkAnswers(received: Buffer): { problems: string[]; codes: number[] } {
  const problems: string[] = [];
  const codes: number[] = [];
  let rest = received;
  while (rest.length > 0) {
    const end = rest.indexOf("\r\n\r\n");
    if (end === -1) {
      problems.push(`a partial answer: ${JSON.stringify(rest.toString("latin1"))}`);
      break;
    }
    const [statusLine = "", ...lines] = rest.subarray(0, end).toString("latin1").split("\r\n");
    const status = Number(/^HTTP\/1\.1 (\d{3}) [^\r\n]*$/.exec(statusLine)?.[1] ?? NaN);
    const headers = new Map(lines.map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]));
    if (status === 100) {
      rest = rest.subarray(end + 4);
      continue;
    }
    const length = Number(headers.get("content-length"));
    // A path outside /api/ is the homepage's: one of its own small HTML pages (no web root here).
    if (Number.isInteger(length) && headers.get("content-type") === "text/html; charset=utf-8") {
      const page = rest.subarray(end + 4, end + 4 + length).toString();
      rest = rest.subarray(end + 4 + length);
      if (![400, 401, 404, 405, 429].includes(status) || !page.startsWith("<!doctype html>") || !page.includes(`<h1>${status} `)) problems.push(`not a page of ours: ${status} ${JSON.stringify(page)}`);
      continue;
    }
    if (!Number.isInteger(length) || headers.get("content-type") !== "application/json") {
      problems.push(`not our envelope: ${JSON.stringify(rest.subarray(0, end).toString("latin1"))}`);
      break;
    }
    const text = rest.subarray(end + 4, end + 4 + length).toString();
    rest = rest.subarray(end + 4 + length);
    let meta: { error: number; message: string } | undefined;
    try {
      meta = (JSON.parse(text) as { meta: { error: number; message: string } }).meta;
    } catch {
      problems.push(`a body that is not JSON: ${JSON.stringify(text)}`);
      break;
    }
    const entry = BY_CODE.get(meta.error);
    codes.push(meta.error);
    if (entry === undefined || entry.message !== meta.message || entry.status !== status) problems.push(`${status} ${text}`);
    else if (entry.code !== 0 && withoutDetail(text) !== failure(entry.code, entry.message)) problems.push(`an error envelope with data: ${text}`);
  }
  return { problems, codes };
}

/** Sends one mutated request from the fuzzing address, half-closes, and collects everything until the server closes. */
function exchange(port: number, bytes: Buffer, reset: boolean): Promise<{ received: Buffer; hung: boolean }> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: "127.0.0.1", localAddress: FUZZ_ADDRESS });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ received: Buffer.concat(chunks), hung: true });
    }, 8_000);
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("error", () => undefined);
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ received: Buffer.concat(chunks), hung: false });
    });
    socket.write(bytes);
    if (reset) socket.resetAndDestroy();
    else socket.end();
  });
}

describe(`fuzzing with seed ${SEED}`, () => {
  it("every answer is our envelope, nothing fails internally, and the keys are intact", async () => {
    // Wrong keys are part of the mix: the fuzzer is blocked now and then (a short block), and
    // checks from 127.0.0.1 are never affected.
    const ts = await startServer({ server: { throttle: { ...DEFAULT_THROTTLE, maxFailures: 50, blockMs: 1_000, maxBlockMs: 1_000 } } });
    const factoryKeys = (await call(ts, "GET", "/api/v1/apikeys", { rd: "rdKey2" })).text;
    const started = Date.now();
    const problems: string[] = [];
    const codes = new Map<number, number>();
    let sent = 0;
    let hung = 0;

    const worker = async (index: number): Promise<void> => {
      const random = seededRandom(deriveSeed(SEED, index));
      for (let n = 0; n < REQUESTS_PER_WORKER && Date.now() - started < MAX_WALL_MS; n++) {
        sent++;
        const bytes = mutate(random, CORPUS[Math.floor(random() * CORPUS.length)] as string);
        const reset = random() < 0.03;
        const result = await exchange(ts.port, bytes, reset);
        if (result.hung) hung++;
        if (reset) continue; // a reset may cut the answer anywhere
        const check = checkAnswers(result.received);
        for (const code of check.codes) codes.set(code, (codes.get(code) ?? 0) + 1);
        const where = `worker ${index}, request ${n}`;
        if (result.hung) problems.push(`no end within 8 s (${where})\n  after sending ${JSON.stringify(bytes.toString("latin1"))}`);
        for (const p of check.problems) problems.push(`${p}\n  ${where}, after sending ${JSON.stringify(bytes.toString("latin1"))}`);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, (_, index) => worker(index)));

    try {
      expect(problems.slice(0, 5)).toEqual([]);
      expect(hung).toBe(0);
      expect(codes.get(14)).toBeUndefined();
      expect(codes.get(13)).toBeUndefined();
      // The mutations reached the parser's refusals, the pipeline's and successful requests.
      expect(sent).toBeGreaterThanOrEqual(50);
      expect([0, 9].every((code) => codes.has(code))).toBe(true);
    } catch (error) {
      const message = `fuzzing failed with seed ${SEED} after ${sent} requests (replay: APIKEYD_FUZZ_SEED=${SEED})`;
      console.error(message);
      throw new Error(`${message}: ${(error as Error).message}`, { cause: error });
    }
    if (sent < CONCURRENCY * REQUESTS_PER_WORKER) console.warn(`fuzzing: the ${MAX_WALL_MS / 1000} s bound cut the run to ${sent} requests`);

    expect((await call(ts, "GET", "/api/v1/device/0/address")).text).toBe(ok("004082ABCDEF"));
    expect(withoutLastUse((await call(ts, "GET", "/api/v1/apikeys", { rd: "rdKey2" })).text)).toBe(withoutLastUse(factoryKeys));
  }, 60_000);
});
