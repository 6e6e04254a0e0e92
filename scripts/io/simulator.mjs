#!/usr/bin/env node
// The simulator I/O driver of apikeyd (docs/io-driver.md): no hardware, inputs that move.
//
//   node dist/apikeyd.js --io-driver "node scripts/io/simulator.mjs [--interval MS] [--period S]"
//
// Every --interval ms (default 500) it reports every input: analog inputs follow a sine wave
// between 4 and 20 with a period of --period s (default 10), every second analog input a counter
// instead; digital inputs show the bits of that counter (the first digital input toggles at each
// report). Output changes are acknowledged (ok true when the value has the point's kind) and
// echoed to standard error, which apikeyd logs. It exits when its standard input closes.

import { createInterface } from "node:readline";

const points = JSON.parse(process.env.APIKEYD_IO_POINTS ?? "[]");
const option = (name, fallback) => {
  const i = process.argv.indexOf(name);
  const value = i === -1 ? fallback : Number(process.argv[i + 1]);
  if (!Number.isFinite(value) || value <= 0) {
    process.stderr.write(`simulator: ${name} takes a positive number\n`);
    process.exit(2);
  }
  return value;
};
const intervalMs = option("--interval", 500);
const periodS = option("--period", 10);

const send = (message) => process.stdout.write(JSON.stringify(message) + "\n");
process.stdout.on("error", () => process.exit(0)); // apikeyd is gone

let counter = 0;
const started = Date.now();
function report() {
  const t = (Date.now() - started) / 1000;
  let analog = 0;
  let digital = 0;
  for (const p of points) {
    if (p.output) continue;
    if (p.digital) {
      send({ entry: p.entry, pin: ((counter >> digital++) & 1) === 1, error: 0 });
    } else {
      const sine = 12 + 8 * Math.sin((2 * Math.PI * t) / periodS);
      const pin = analog++ % 2 === 0 ? Math.round(sine * 1000) / 1000 : counter % 1000;
      send({ entry: p.entry, pin, error: 0 });
    }
  }
  counter++;
}

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  let change;
  try {
    change = JSON.parse(line);
  } catch {
    process.stderr.write("simulator: a line that is not JSON\n");
    return;
  }
  const point = points.find((p) => p.entry === change.entry);
  const ok = point !== undefined && point.output && typeof change.pin === (point.digital ? "boolean" : "number");
  process.stderr.write(`simulator: ${point?.name ?? "?"} (entry ${change.entry}) := ${JSON.stringify(change.pin)}${ok ? "" : " refused"}\n`);
  send({ id: change.id, ok });
});
lines.on("close", () => process.exit(0));

report();
setInterval(report, intervalMs);
