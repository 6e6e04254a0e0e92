// Shared by scripts/bench.mjs and scripts/bench/profile.mjs: the two servers as child processes,
// the capture of apikeyd's bytes for the bare server, and the undici load generator.
import { execFileSync, spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Pool } from "undici";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
// BENCH_BUNDLE measures another build of apikeyd (e.g. one with a change undone) with the same harness.
export const BUNDLE = process.env.BENCH_BUNDLE ?? join(ROOT, "dist", "apikeyd.js");
const BARE = join(ROOT, "scripts", "bench", "bare-server.mjs");
const CONFIG_DIR = join(ROOT, "device-config");

// The throttle blocks an address after 10 wrong keys within 60 s. Raised to its ceiling (1000 within
// 1 s), and with the refused reads spread over REFUSED_SOURCES loopback addresses, every refusal
// stays below it: each one is a real key check ("below the throttle"), never a 429.
export const APIKEYD_ARGS = ["--host", "127.0.0.1", "--port", "0", "--config-dir", CONFIG_DIR, "--throttle-attempts", "1000", "--throttle-window", "1"];
const REFUSED_SOURCES = 128;

/** The read scenarios; each target is distinct so that the bare server can answer by target alone. */
export const READS = [
  { name: "small", title: "authenticated small read", path: "/api/v1/properties/name", headers: { ApiRdKey: "rdKey1" }, status: 200 },
  { name: "document", title: "whole-document read", path: "/api/v1/apikeys", headers: { ApiRdKey: "rdKey2" }, status: 200 },
  { name: "logged", title: "authenticated small read, with --log-requests", path: "/api/v1/properties/name", headers: { ApiRdKey: "rdKey1" }, status: 200, logRequests: true },
  { name: "refused", title: "refused read (wrong key)", path: "/api/v1/properties", headers: { ApiRdKey: "wrongKey" }, status: 401, sources: REFUSED_SOURCES },
  // The small read again, from a second apikeyd whose keys are sealed (docs/api.md §9): one SHA-256 per request.
  { name: "sealed", title: "authenticated small read, sealed device", path: "/api/v1/properties/name", headers: { ApiRdKey: "rdKey1" }, status: 200, sealed: true },
  // The homepage (docs/api.md §10): a public static file, and the public page made by server-side includes.
  { name: "static", title: "homepage: a static file (style.css)", path: "/style.css", headers: {}, status: 200, homepage: true },
  { name: "shtml", title: "homepage: the public .shtml page (server-side includes)", path: "/", headers: {}, status: 200, homepage: true },
];

/** A second apikeyd, sealed (PUT sealed=true with the factory apikeys pair) before it is measured. */
export async function startSealed(runDir) {
  const server = await startForLoad(runDir, "apikeyd", "apikeyd-sealed");
  const answer = await fetch(`${server.url}/api/v1/apikeys`, {
    method: "PUT",
    headers: { ApiRdKey: "rdKey2", ApiWrKey: "wrKey2", "Content-Type": "application/x-www-form-urlencoded" },
    body: "sealed=true",
  });
  if (answer.status !== 200) throw new Error(`sealing the bench's second apikeyd: HTTP ${answer.status}`);
  await answer.arrayBuffer();
  return server;
}

// The servers run with the environment an appliance gives them: without NODE_OPTIONS and without
// NODE_EXTRA_CA_CERTS (set on many development machines; loading a CA bundle adds tens of
// milliseconds to every node start, which would hide the start-up cost of our own code).
const CHILD_ENV = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== "NODE_OPTIONS" && k !== "NODE_EXTRA_CA_CERTS"));

/** Every child spawned, so that a failure never leaves a server running (see killAll). */
const children = new Set();

/** SIGKILLs every child still running. */
export function killAll() {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
}

// ---------------------------------------------------------------------------------------------
// wrk, when installed: the load generator of the measurements (C, one thread, much cheaper
// per request than undici). On a machine with 2 or more cores it runs pinned to core 0 and the
// servers to core 1 (taskset), so that neither steals the other's core. BENCH_LOAD=undici forces undici.

const which = (tool) => {
  try {
    execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
};
export const WRK = process.env.BENCH_LOAD !== "undici" && which("wrk");
const PIN = WRK && which("taskset") && os.cpus().length >= 2;
/** The command prefix that pins a server (core 1) or the load generator (core 0), when pinning. */
export const pinned = (core, argv) => (PIN ? ["taskset", "-c", String(core), ...argv] : argv);
export const LOAD_GENERATOR = WRK ? `wrk (one thread${PIN ? ", pinned to core 0, the servers to core 1" : ""})` : "undici";

/** Starts a server whose stderr goes to a file (the load never waits on a pipe); resolves once it listens. */
export async function startForLoad(runDir, kind, label, nodeArgs = [], extraArgs = []) {
  const logPath = join(runDir, `${label}.log`);
  const fd = openSync(logPath, "w");
  const args = kind === "apikeyd" ? [BUNDLE, ...APIKEYD_ARGS, ...extraArgs, "--state-dir", join(runDir, `${label}-state`)] : [BARE, join(runDir, "answers.json")];
  const [command, ...argv] = pinned(1, [process.execPath, ...nodeArgs, ...args]);
  const proc = spawn(command, argv, { stdio: ["ignore", "ignore", fd], env: CHILD_ENV });
  children.add(proc);
  closeSync(fd);
  const deadline = Date.now() + 15_000;
  for (;;) {
    const text = readFileSync(logPath, "utf8");
    const match = /listening url=(\S+)/.exec(text);
    if (match) return { kind, proc, pid: proc.pid, url: match[1], port: Number(new URL(match[1]).port), logPath };
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`${kind} did not start:\n${text}`);
    await sleep(20);
  }
}

/**
 * Spawn to "listening" on stderr, in milliseconds, through a pipe read at once. apikeyd starts on
 * `stateDir` when given (a restart: the folder is kept), else on a fresh folder (a first start).
 */
export async function timeStart(runDir, kind, keptStateDir) {
  const stateDir = keptStateDir ?? join(runDir, `start-${kind}-${Math.random().toString(36).slice(2)}`);
  const args = kind === "apikeyd" ? [BUNDLE, ...APIKEYD_ARGS, "--state-dir", stateDir] : [BARE, join(runDir, "answers.json")];
  const t0 = process.hrtime.bigint();
  const proc = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"], env: CHILD_ENV });
  children.add(proc);
  const ms = await new Promise((resolve, reject) => {
    let text = "";
    proc.stderr.on("data", (chunk) => {
      text += chunk;
      if (/listening url=/.test(text)) resolve(Number(process.hrtime.bigint() - t0) / 1e6);
    });
    proc.on("exit", () => reject(new Error(`${kind} exited before listening:\n${text}`)));
  });
  proc.stderr.resume();
  await stop({ proc });
  if (keptStateDir === undefined) rmSync(stateDir, { recursive: true, force: true });
  return ms;
}

export async function stop(server) {
  const { proc } = server;
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((resolve) => proc.once("exit", resolve));
  proc.kill("SIGTERM");
  const timer = setTimeout(() => proc.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
}

/** Resident memory (VmRSS) and its peak (VmHWM) in MB. */
export function memory(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (field) => Number(new RegExp(`^${field}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? NaN);
  return { rssMb: kb("VmRSS") / 1024, peakMb: kb("VmHWM") / 1024 };
}

/** User plus system CPU time of a process, in milliseconds. */
function cpuMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
}
const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// Capturing apikeyd's bytes and checking that the bare server answers the same

/** One request over a raw socket; the whole response as bytes (read until Content-Length is satisfied). */
export function rawExchange(port, method, path, headers) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    let lines = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`;
    for (const [k, v] of Object.entries(headers)) lines += `${k}: ${v}\r\n`;
    socket.write(lines + "\r\n");
    let data = Buffer.alloc(0);
    socket.on("data", (chunk) => {
      data = Buffer.concat([data, chunk]);
      const end = data.indexOf("\r\n\r\n");
      if (end === -1) return;
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(data.subarray(0, end).toString("latin1"))?.[1] ?? 0);
      if (data.length >= end + 4 + length) {
        socket.destroy();
        resolve(data);
      }
    });
    socket.on("error", reject);
  });
}

export function parseResponse(raw) {
  const end = raw.indexOf("\r\n\r\n");
  const [statusLine, ...headerLines] = raw.subarray(0, end).toString("latin1").split("\r\n");
  const headers = [];
  for (const line of headerLines) {
    const colon = line.indexOf(":");
    headers.push(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  return { status: Number(statusLine.split(" ")[1]), headers, body: raw.subarray(end + 4) };
}

// Node adds these to every answer of both servers by itself.
const NODE_ADDED = new Set(["date", "connection", "keep-alive"]);
// A pair's lastUsed (docs/api.md §8) moves with the second in which the pair was last used: apikeyd's
// apikeys answers say when the capture's read came, the bare server's when apikeyd's did.
// What changes between two answers of the same page: Date, a pair's last use, and a page's clock
// (the time and uptime of server-side includes: digits only, so the length stays the same).
const maskDate = (raw) =>
  raw
    .toString("latin1")
    .replace(/\r\nDate: [^\r]*/, "\r\nDate: *")
    .replace(/"lastUsed":\d+/g, '"lastUsed":*')
    .replace(/\d\d:\d\d:\d\d/g, "**:**:**")
    .replace(/\d{4}-\d\d-\d\d/g, "****-**-**");

export async function captureAnswers(runDir, apikeyd, reads) {
  const answers = [];
  for (const s of reads) {
    const { status, headers, body } = parseResponse(await rawExchange(apikeyd.port, "GET", s.path, s.headers));
    if (status !== s.status) throw new Error(`${s.name}: apikeyd answered ${status}, expected ${s.status}`);
    const kept = [];
    for (let i = 0; i < headers.length; i += 2) if (!NODE_ADDED.has(headers[i].toLowerCase())) kept.push(headers[i], headers[i + 1]);
    answers.push({ url: s.path, status, headers: kept, body: body.toString("base64") });
  }
  writeFileSync(join(runDir, "answers.json"), JSON.stringify(answers));
}

export async function checkSameBytes(apikeyd, bare, reads) {
  for (const s of reads) {
    const a = maskDate(await rawExchange(apikeyd.port, "GET", s.path, s.headers));
    const b = maskDate(await rawExchange(bare.port, "GET", s.path, s.headers));
    if (a !== b) throw new Error(`${s.name}: the bare server's bytes differ from apikeyd's:\n--- apikeyd\n${a}\n--- bare\n${b}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Load

/**
 * Drives `concurrency` request loops over as many keep-alive connections (pipelining 1) for
 * `durationMs`; `makeRequest(loop, seq)` gives each request. Uses undici's dispatch with a bare
 * handler (no stream per answer) so that the load generator stays cheaper than the server it
 * measures. Returns counts, latency percentiles, and the CPU time of server and generator.
 */
export async function drive(server, concurrency, durationMs, makeRequest, expectStatus, sources = 0) {
  // With `sources`, request n goes out from 127.0.1.(n % sources + 1), one connection per address.
  const pools =
    sources > 0
      ? Array.from({ length: sources }, (_, i) => new Pool(server.url, { connections: 1, pipelining: 1, localAddress: `127.0.1.${i + 1}` }))
      : [new Pool(server.url, { connections: concurrency, pipelining: 1 })];
  let sent = 0;
  const latencies = [];
  let unexpected = 0;
  const cpu0 = cpuMs(server.pid);
  const client0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = Date.now() + durationMs;
  await new Promise((resolve, reject) => {
    let active = concurrency;
    const next = (id, seq) => {
      if (Date.now() >= deadline) {
        if (--active === 0) resolve();
        return;
      }
      const start = performance.now();
      pools[sent++ % pools.length].dispatch(makeRequest(id, seq), {
        onRequestStart() {},
        onResponseStart(_controller, statusCode) {
          if (statusCode !== expectStatus) unexpected++;
        },
        onResponseData() {},
        onResponseEnd() {
          latencies.push(performance.now() - start);
          next(id, seq + 1);
        },
        onResponseError(_controller, error) {
          reject(error);
        },
      });
    };
    for (let id = 0; id < concurrency; id++) next(id, 0);
  });
  const elapsedS = (performance.now() - t0) / 1000;
  const serverCpuMs = cpuMs(server.pid) - cpu0;
  const client = process.cpuUsage(client0);
  await Promise.all(pools.map((p) => p.close()));
  if (unexpected > 0) throw new Error(`${server.kind}: ${unexpected} of ${latencies.length} answers had a status other than ${expectStatus}`);
  latencies.sort((x, y) => x - y);
  return {
    requests: latencies.length,
    rps: latencies.length / elapsedS,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    serverCpuUsPerReq: (serverCpuMs * 1000) / latencies.length,
    serverCpuPct: (serverCpuMs / 10) / elapsedS,
    clientCpuPct: ((client.user + client.system) / 1e6 / elapsedS) * 100,
    rssMbAfter: memory(server.pid).rssMb,
  };
}

/**
 * The same measurement as drive(), with wrk: `connections` keep-alive connections, one thread, for
 * `durationMs`, every request `path` with `headers`. Any status but `expectStatus` fails the run.
 */
export async function driveWrk(server, connections, durationMs, path, headers, expectStatus) {
  const args = ["-t1", `-c${connections}`, `-d${Math.max(1, Math.round(durationMs / 1000))}s`, "--latency", "--timeout", "5s"];
  for (const [k, v] of Object.entries(headers)) args.push("-H", `${k}: ${v}`);
  args.push(server.url + path);
  const [command, ...argv] = pinned(0, ["wrk", ...args]);
  const cpu0 = cpuMs(server.pid);
  const children0 = childrenCpuMs();
  const t0 = performance.now();
  const out = await new Promise((resolve, reject) => {
    const child = spawn(command, argv, { stdio: ["ignore", "pipe", "pipe"] });
    children.add(child);
    let text = "";
    child.stdout.on("data", (c) => (text += c));
    child.stderr.on("data", (c) => (text += c));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited ${code}:\n${text}`))));
  });
  const elapsedS = (performance.now() - t0) / 1000;
  const serverCpuMs = cpuMs(server.pid) - cpu0;
  const clientCpuMs = childrenCpuMs() - children0;
  const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
  const wrkSeconds = Number(/requests in ([\d.]+)(m?s)/.exec(out)?.[1]) / (/requests in [\d.]+ms/.test(out) ? 1000 : 1);
  const errors = /Socket errors: (.*)/.exec(out)?.[1];
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const unexpected = expectStatus >= 200 && expectStatus < 400 ? non2xx : requests - non2xx;
  if (!Number.isFinite(requests) || unexpected > 0 || errors !== undefined) throw new Error(`${server.kind}: wrk: ${unexpected} answers other than ${expectStatus}, socket errors: ${errors ?? "none"}\n${out}`);
  return {
    requests,
    rps: requests / wrkSeconds,
    p50Ms: wrkLatencyMs(out, "50%"),
    p99Ms: wrkLatencyMs(out, "99%"),
    serverCpuUsPerReq: (serverCpuMs * 1000) / requests,
    serverCpuPct: serverCpuMs / 10 / elapsedS,
    clientCpuPct: (clientCpuMs / 10) / elapsedS,
    rssMbAfter: memory(server.pid).rssMb,
  };
}

function wrkLatencyMs(out, percentile) {
  const m = new RegExp(`^\\s*${percentile}\\s+([\\d.]+)(us|ms|s)\\s*$`, "m").exec(out);
  if (m === null) return NaN;
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2]];
}

/** CPU time (user + system, ms) of this process's children that have been waited for. */
function childrenCpuMs() {
  const stat = readFileSync("/proc/self/stat", "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[13]) + Number(fields[14])) * 1000) / CLOCK_TICKS;
}

export const percentile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
export const median = (values) => {
  const s = [...values].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
};
export const summarize = (runs) => {
  const out = { rounds: runs.length };
  for (const key of ["rps", "p50Ms", "p99Ms", "serverCpuUsPerReq", "serverCpuPct", "clientCpuPct"]) out[key] = median(runs.map((r) => r[key]));
  out.runs = runs;
  return out;
};

export const readRequest = (s) => () => ({ method: "GET", path: s.path, headers: s.headers });

export function putRequest(writers) {
  return (id, seq) => ({
    method: "PUT",
    path: "/api/v1/properties/name",
    headers: { ApiRdKey: "rdKey1", ApiWrKey: "wrKey1", "Content-Type": "application/x-www-form-urlencoded" },
    // A different value every time, so that every PUT really writes.
    body: `name=bench-${writers}-${id}-${seq}`,
  });
}


// ---------------------------------------------------------------------------------------------
// Provisioning: loopback fleets of real servers (scripts/bench/fleet-host.ts, bundled here with
// esbuild) and timed runs of dist/provision.js against them.

const TOOL = join(ROOT, "dist", "provision.js");

/** Bundles the fleet host into the run folder; returns its path. */
export async function buildFleetHost(runDir) {
  const { build } = await import("esbuild");
  const outfile = join(runDir, "fleet-host.mjs");
  await build({ entryPoints: [join(ROOT, "scripts", "bench", "fleet-host.ts")], outfile, bundle: true, platform: "node", format: "esm", target: "node18", logLevel: "warning" });
  return outfile;
}

/** Starts one process hosting `count` devices with fresh state folders; resolves with their ports. */
export async function startFleetHost(hostScript, runDir, label, count) {
  const stateRoot = join(runDir, `${label}-state`);
  const proc = spawn(process.execPath, [hostScript, String(count), CONFIG_DIR, stateRoot], { stdio: ["ignore", "pipe", "inherit"], env: CHILD_ENV });
  children.add(proc);
  const ports = await new Promise((resolve, reject) => {
    let text = "";
    proc.stdout.on("data", (chunk) => {
      text += chunk;
      const line = text.split("\n")[0];
      if (text.includes("\n")) resolve(JSON.parse(line).ports);
    });
    proc.on("exit", (code) => reject(new Error(`fleet host exited ${code} before listening`)));
  });
  return { proc, ports, stateRoot };
}

/** Runs dist/provision.js on `ports` (factory keys) with `args`; resolves with its wall time and output. */
export async function timeProvision(runDir, label, ports, args = []) {
  const dir = join(runDir, label);
  mkdirSync(dir, { mode: 0o700 });
  const inventory = join(dir, "devices.json");
  writeFileSync(inventory, JSON.stringify(ports.map((p) => `127.0.0.1:${p}`)));
  const out = join(dir, "secrets.json");
  const t0 = performance.now();
  const result = await new Promise((resolve) => {
    const proc = spawn(process.execPath, [TOOL, "--inventory", inventory, "--out", out, ...args], { stdio: ["ignore", "pipe", "pipe"], env: CHILD_ENV });
    children.add(proc);
    let stdout = "";
    let stderr = "";
    proc.stdout.on("data", (c) => (stdout += c));
    proc.stderr.on("data", (c) => (stderr += c));
    proc.on("close", (code) => resolve({ code, stdout, stderr }));
  });
  const seconds = (performance.now() - t0) / 1000;
  if (result.code !== 0) throw new Error(`provisioning ${label} exited ${result.code}:\n${result.stdout}\n${result.stderr.slice(-2000)}`);
  const recorded = Object.keys(JSON.parse(readFileSync(out, "utf8"))).length;
  if (recorded !== ports.length) throw new Error(`provisioning ${label}: ${recorded} of ${ports.length} devices recorded`);
  return { seconds, devices: ports.length, summary: /^\d+ devices?:.*$/m.exec(result.stdout)?.[0] ?? "" };
}
