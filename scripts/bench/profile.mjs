// The profile behind the performance work: runs the bundled server, then the bare node:http server
// answering the same bytes, each under `node --cpu-prof` with the same load, and prints the
// functions by self time per request side by side: what apikeyd spends beyond bare node:http.
//
//   node scripts/build.mjs && node scripts/bench/profile.mjs [small|logged|document|refused|put] [seconds]
//
// PROFILE_TOP (25) rows. BENCH_BUNDLE profiles another build. Profiles sample wall time on the
// main thread: time in a system call (writev) counts, time the process waits for work does not.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import * as os from "node:os";
import { join } from "node:path";
import { READS, captureAnswers, drive, killAll, putRequest, readRequest, startForLoad, stop } from "./lib.mjs";

const scenario = process.argv[2] ?? "small";
const seconds = Number(process.argv[3] ?? 5);
const TOP = Number(process.env.PROFILE_TOP ?? 25);
const read = READS.find((s) => s.name === scenario);
const runDir = mkdtempSync(join(os.tmpdir(), "apikeyd-profile-"));

async function profiled(kind) {
  const dir = join(runDir, `profile-${kind}`);
  const server = await startForLoad(runDir, kind, kind, ["--cpu-prof", "--cpu-prof-dir", dir], read?.logRequests ? ["--log-requests"] : []);
  if (kind === "apikeyd" && read) await captureAnswers(runDir, server, READS);
  const run = read
    ? await drive(server, 16, seconds * 1000, readRequest(read), read.status, read.sources)
    : await drive(server, 16, seconds * 1000, putRequest(16), 200);
  await stop(server); // the profile is written at exit
  const file = readdirSync(dir).find((n) => n.endsWith(".cpuprofile"));
  const profile = JSON.parse(readFileSync(join(dir, file), "utf8"));
  console.log(`${kind}: ${run.rps.toFixed(0)} req/s, ${run.serverCpuUsPerReq.toFixed(1)} µs of server CPU per request (from /proc)`);
  return { run, self: selfTimes(profile) };
}

/** Self time per function in µs, summed over the call tree; "ours" are frames of dist/apikeyd.js. */
function selfTimes(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const { functionName, url, lineNumber } = byId.get(profile.samples[i]).callFrame;
    const ours = url.endsWith("apikeyd.js") || url.includes("/dist/");
    const where = url === "" ? "" : ours ? `apikeyd.js:${lineNumber + 1}` : url.startsWith("node:") ? url.slice(5) : url.split("/").pop();
    const key = `${ours ? "* " : ""}${functionName || "(anonymous)"} ${where}`.trim();
    self.set(key, (self.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  self.delete("(idle)");
  return self;
}

try {
  const a = await profiled("apikeyd");
  const b = read ? await profiled("bare") : undefined;
  const perReq = (p, key) => (p === undefined ? 0 : (p.self.get(key) ?? 0) / p.run.requests);
  const total = (p) => (p === undefined ? 0 : [...p.self.values()].reduce((x, y) => x + y, 0) / p.run.requests);
  let ours = 0;
  for (const [key, us] of a.self) if (key.startsWith("* ")) ours += us / a.run.requests;
  console.log(`\nsampled busy time per request: apikeyd ${total(a).toFixed(2)} µs, bare ${b ? total(b).toFixed(2) : "-"} µs; in dist/apikeyd.js itself: ${ours.toFixed(2)} µs`);
  console.log("(* = our code in dist/apikeyd.js; sorted by apikeyd minus bare)\n");
  console.log("apikeyd µs/req   bare µs/req   difference  function");
  const keys = new Set([...a.self.keys(), ...(b ? b.self.keys() : [])]);
  const rows = [...keys].map((k) => [k, perReq(a, k), perReq(b, k)]).sort((x, y) => y[1] - y[2] - (x[1] - x[2]));
  for (const [key, x, y] of rows.slice(0, TOP)) {
    console.log(`${x.toFixed(2).padStart(14)} ${y.toFixed(2).padStart(13)} ${(x - y).toFixed(2).padStart(12)}  ${key.slice(0, 100)}`);
  }
} finally {
  killAll();
  rmSync(runDir, { recursive: true, force: true });
}
