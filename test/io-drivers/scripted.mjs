#!/usr/bin/env node
// A test I/O driver whose misbehaviour the command line chooses (test/io-driver.test.ts).
//   --record FILE        append every line received to FILE (and "start <pid> <ms>" at each start)
//   --report JSON        write this line at start (repeatable)
//   --refuse-value V     answer ok:false to a change setting pin to V (JSON)
//   --silent-value V     never answer a change setting pin to V
//   --die-value V        exit 3 on a change setting pin to V, without answering
//   --exit-after MS      exit 1 MS after the start
//   --flood              write input reports as fast as the pipe takes them
//   --garbage            write lines that are not protocol, then {"entry":0,"pin":1.5,"error":0}
//   --stderr-flood       write 5000 lines to standard error
// Otherwise every change is acknowledged ok:true. It exits when its standard input closes.

import { appendFileSync } from "node:fs";
import { createInterface } from "node:readline";

const args = process.argv.slice(2);
const all = (name) => args.flatMap((a, i) => (a === name ? [args[i + 1]] : []));
const one = (name) => all(name)[0];
const has = (name) => args.includes(name);
const record = one("--record");
const log = (text) => record !== undefined && appendFileSync(record, text + "\n");
const same = (name, pin) => one(name) !== undefined && JSON.stringify(JSON.parse(one(name))) === JSON.stringify(pin);

log(`start ${process.pid} ${Date.now()}`);
process.stdout.on("error", () => process.exit(0));
for (const line of all("--report")) process.stdout.write(line + "\n");

createInterface({ input: process.stdin })
  .on("line", (line) => {
    log(line);
    const change = JSON.parse(line);
    if (same("--die-value", change.pin)) process.exit(3);
    if (same("--silent-value", change.pin)) return;
    process.stdout.write(JSON.stringify({ id: change.id, ok: !same("--refuse-value", change.pin) }) + "\n");
  })
  .on("close", () => process.exit(0));

if (one("--exit-after") !== undefined) setTimeout(() => process.exit(1), Number(one("--exit-after")));

// After the start's acknowledgements, so that none lands inside the half line.
if (has("--garbage")) setTimeout(garbage, 300);
function garbage() {
  const long = JSON.stringify({ entry: 0, pin: 2, error: 0, pad: "x".repeat(5000) });
  const lines = [
    "not json", "[1,2]", "null", '"text"', "{}", '{"entry":9,"pin":1}', '{"entry":-1,"pin":1}', '{"entry":0,"pin":"12"}',
    '{"entry":0,"pin":true}', '{"entry":3,"pin":1}', '{"entry":2,"pin":false}', '{"entry":0,"error":1000}', '{"entry":0,"error":-1}',
    '{"entry":0}', '{"id":0,"ok":true}', '{"id":1.5,"ok":true}', '{"id":99999,"ok":"yes"}', '{"id":5,"ok":true,"entry":0}', long,
    "\u0000\u001b[31m\u202e", '{"id":99999,"ok":true}', '{"entry":0,"pin":1e999}',
  ];
  process.stdout.write(lines.join("\n") + "\n");
  process.stdout.write('{"entry":0,"pi'); // half a line, finished by the next write
  setTimeout(() => process.stdout.write('n":1.5,"error":0}\n{"entry":3,"pin":true,"err'), 50);
}

if (has("--flood")) {
  let n = 0;
  const chunk = () => {
    let text = "";
    for (let i = 0; i < 500; i++, n++) text += `{"entry":${n % 2 === 0 ? 0 : 3},"pin":${n % 2 === 0 ? n : n % 4 === 1},"error":0}\n`;
    return text;
  };
  const pump = () => {
    while (process.stdout.write(chunk()));
    process.stdout.once("drain", pump);
  };
  pump();
}

if (has("--stderr-flood")) for (let i = 0; i < 5000; i++) process.stderr.write(`noise ${i}\n`);
