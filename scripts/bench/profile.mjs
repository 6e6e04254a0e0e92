// The profile behind the performance work: runs the bundled server under `node --cpu-prof`, drives
// one scenario at it, stops it cleanly (the profile is written at exit) and prints the frames with
// the most self time, ours (dist/apikeyd.js) marked.
//
//   node scripts/build.mjs && node scripts/bench/profile.mjs [small|document|refused|put] [seconds]
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import * as os from "node:os";
import { join } from "node:path";
import { READS, drive, killAll, putRequest, readRequest, startForLoad, stop } from "./lib.mjs";

const scenario = process.argv[2] ?? "small";
const seconds = Number(process.argv[3] ?? 5);
const TOP = Number(process.env.PROFILE_TOP ?? 25);
const runDir = mkdtempSync(join(os.tmpdir(), "apikeyd-profile-"));
const profileDir = join(runDir, "profile");

try {
  const server = await startForLoad(runDir, "apikeyd", "apikeyd", ["--cpu-prof", "--cpu-prof-dir", profileDir]);
  const read = READS.find((s) => s.name === scenario);
  const run = read
    ? await drive(server, 16, seconds * 1000, readRequest(read), read.status)
    : await drive(server, 16, seconds * 1000, putRequest(16), 200);
  console.log(`${scenario}: ${run.rps.toFixed(0)} req/s, ${run.serverCpuUsPerReq.toFixed(1)} µs of server CPU per request`);
  await stop(server);
  const file = readdirSync(profileDir).find((n) => n.endsWith(".cpuprofile"));
  report(JSON.parse(readFileSync(join(profileDir, file), "utf8")), run.requests);
} finally {
  killAll();
  rmSync(runDir, { recursive: true, force: true });
}

/** Self time per function (summed over the nodes of the call tree), with µs per request. */
function report(profile, requests) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]);
    const dt = profile.timeDeltas[i] ?? 0;
    const { functionName, url, lineNumber } = node.callFrame;
    const where = url === "" ? "" : url.includes("apikeyd.js") ? `apikeyd.js:${lineNumber + 1}` : url.replace(/^node:/, "");
    const key = `${functionName || "(anonymous)"} ${where}`.trim();
    self.set(key, (self.get(key) ?? 0) + dt);
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const idle = self.get("(idle)") ?? 0;
  const busy = total - idle;
  let ours = 0;
  for (const [key, us] of self) if (key.includes("apikeyd.js")) ours += us;
  console.log(`busy ${(busy / 1000).toFixed(0)} ms of ${(total / 1000).toFixed(0)} ms profiled; self time in dist/apikeyd.js: ${((ours / busy) * 100).toFixed(1)}% of busy (${(ours / requests).toFixed(2)} µs/request)`);
  console.log("  self%   µs/req  function");
  const rows = [...self].filter(([key]) => key !== "(idle)").sort((a, b) => b[1] - a[1]).slice(0, TOP);
  for (const [key, us] of rows) {
    const mark = key.includes("apikeyd.js") ? "*" : " ";
    console.log(`${mark} ${((us / busy) * 100).toFixed(1).padStart(5)}  ${(us / requests).toFixed(2).padStart(7)}  ${key}`);
  }
}
