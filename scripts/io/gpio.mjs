#!/usr/bin/env node
// The Raspberry Pi I/O driver of apikeyd (docs/io-driver.md#the-raspberry-pi-gpio-driver), on the
// kernel's GPIO character device through libgpiod's tools (Debian 12 / Raspberry Pi OS bookworm:
// `apt install gpiod`, libgpiod 1.6):
//
//   node dist/apikeyd.js --io-driver "node scripts/io/gpio.mjs --map /etc/apikeyd/gpio.map"
//
// The map file names, for each `process` entry's `pin`, a GPIO chip and line offset:
//
//   # pin   chip       line  [active-low]
//   XB.4    gpiochip0  17
//   XB.6    gpiochip0  27    active-low
//
// Digital inputs are read with `gpioget` at start, then followed with `gpiomon`; a digital output
// is held by one `gpioset --mode=signal` per line (a line set by a gpioset that exits falls back to
// its default), replaced at each change. Points that are not mapped, and analog points, report
// error 1 and refuse changes; a GPIO tool that fails reports error 2 (and a gpiomon that ends makes
// this driver exit, so that apikeyd restarts it). It exits when its standard input closes.

import { spawn, execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";

const ERROR_UNMAPPED = 1;
const ERROR_GPIO = 2;
/** How long a new gpioset must stay up before its change is acknowledged (a refusal exits at once). */
const SETTLE_MS = 100;

const points = JSON.parse(process.env.APIKEYD_IO_POINTS ?? "[]");
const mapIndex = process.argv.indexOf("--map");
const mapFile = mapIndex === -1 ? process.env.APIKEYD_GPIO_MAP ?? "/etc/apikeyd/gpio.map" : process.argv[mapIndex + 1];

const say = (text) => process.stderr.write(`gpio: ${text}\n`);
const send = (message) => process.stdout.write(JSON.stringify(message) + "\n");
process.stdout.on("error", () => shutdown(0));

/** pin name -> { chip, line, activeLow } */
function readMap(file) {
  const map = new Map();
  let text;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    say(`cannot read the map file ${file}: ${error.code ?? error.message}`);
    process.exit(1);
  }
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/#.*/, "").trim();
    if (line === "") return;
    const [pin, chip, offset, flag, ...rest] = line.split(/\s+/);
    if (!/^\d+$/.test(offset ?? "") || (flag !== undefined && flag !== "active-low") || rest.length > 0) {
      say(`${file}:${i + 1}: expected "PIN CHIP LINE [active-low]"; line ignored`);
      return;
    }
    map.set(pin, { chip, line: Number(offset), activeLow: flag === "active-low" });
  });
  return map;
}

const map = readMap(mapFile);
const children = new Set();
const track = (child) => {
  children.add(child);
  child.on("exit", () => children.delete(child));
  return child;
};

let stopping = false;
function shutdown(code) {
  if (stopping) return;
  stopping = true;
  for (const child of children) child.kill("SIGTERM");
  setTimeout(() => process.exit(code), 50);
}
process.on("SIGTERM", () => shutdown(0));

// ----- inputs ------------------------------------------------------------------------------------

const inputs = points.filter((p) => !p.output);
const groups = new Map(); // "chip active-low" -> [{ entry, line }]
for (const p of inputs) {
  const where = map.get(p.pin);
  if (where === undefined || !p.digital) {
    send({ entry: p.entry, error: ERROR_UNMAPPED });
    continue;
  }
  const key = `${where.chip} ${where.activeLow}`;
  groups.set(key, [...(groups.get(key) ?? []), { entry: p.entry, chip: where.chip, line: where.line, activeLow: where.activeLow }]);
}

for (const members of groups.values()) {
  const { chip, activeLow } = members[0];
  const lines = members.map((m) => String(m.line));
  const low = activeLow ? ["-l"] : [];
  execFile("gpioget", [...low, chip, ...lines], (error, stdout) => {
    const values = String(stdout).trim().split(/\s+/);
    if (error !== null || values.length !== members.length) {
      say(`gpioget ${chip} ${lines.join(" ")} failed: ${error?.message ?? "unexpected output"}`);
      for (const m of members) send({ entry: m.entry, error: ERROR_GPIO });
    } else members.forEach((m, i) => send({ entry: m.entry, pin: values[i] === "1", error: 0 }));
    if (stopping) return;
    const monitor = track(spawn("gpiomon", ["-b", ...low, "--format=%o %e", chip, ...lines], { stdio: ["ignore", "pipe", "pipe"] }));
    monitor.stderr.on("data", (c) => say(`gpiomon: ${String(c).trim()}`));
    createInterface({ input: monitor.stdout }).on("line", (text) => {
      const [offset, event] = text.trim().split(/\s+/);
      const m = members.find((x) => String(x.line) === offset);
      if (m !== undefined) send({ entry: m.entry, pin: event === "1", error: 0 });
    });
    monitor.on("error", (e) => say(`gpiomon cannot run: ${e.code ?? e.message}`));
    monitor.on("exit", (code) => {
      if (stopping) return;
      say(`gpiomon ${chip} ended (${code}); exiting so that apikeyd restarts this driver`);
      for (const m of members) send({ entry: m.entry, error: ERROR_GPIO });
      shutdown(1);
    });
  });
}

// ----- outputs -----------------------------------------------------------------------------------

const held = new Map(); // entry -> the gpioset holding its line

function stopHolder(entry) {
  const holder = held.get(entry);
  held.delete(entry);
  if (holder === undefined || holder.exitCode !== null || holder.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    holder.once("exit", resolve);
    holder.kill("SIGTERM");
  });
}

async function setOutput(point, value) {
  const where = map.get(point.pin);
  if (where === undefined || !point.digital || typeof value !== "boolean") return false;
  await stopHolder(point.entry);
  const args = [...(where.activeLow ? ["-l"] : []), "--mode=signal", where.chip, `${where.line}=${value ? 1 : 0}`];
  const setter = track(spawn("gpioset", args, { stdio: ["ignore", "ignore", "pipe"] }));
  setter.stderr.on("data", (c) => say(`gpioset: ${String(c).trim()}`));
  return new Promise((resolve) => {
    let settled = false;
    const settle = (ok) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(ok);
    };
    const timer = setTimeout(() => {
      held.set(point.entry, setter);
      settle(true);
    }, SETTLE_MS);
    const failed = (why) => {
      say(`gpioset ${args.join(" ")} failed (${why})`);
      send({ entry: point.entry, error: ERROR_GPIO });
      settle(false);
    };
    setter.once("error", (e) => failed(e.code ?? e.message));
    setter.once("exit", (code, signal) => {
      // Replaced on purpose (stopHolder took it off `held` first): nothing to say.
      const holding = held.get(point.entry) === setter;
      if (holding) held.delete(point.entry);
      if (!settled || holding) failed(`exit ${code ?? signal}`);
    });
  });
}

for (const p of points) if (p.output && (!map.has(p.pin) || !p.digital)) send({ entry: p.entry, error: ERROR_UNMAPPED });

// Changes of one entry arrive one at a time (apikeyd waits for each answer); lines are handled in order.
let queue = Promise.resolve();
createInterface({ input: process.stdin })
  .on("line", (line) => {
    queue = queue.then(async () => {
      let change;
      try {
        change = JSON.parse(line);
      } catch {
        say("a line that is not JSON");
        return;
      }
      const point = points.find((p) => p.entry === change.entry && p.output);
      const ok = point !== undefined && (await setOutput(point, change.pin));
      send({ id: change.id, ok });
    });
  })
  .on("close", () => shutdown(0));
