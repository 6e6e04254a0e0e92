/** The I/O driver protocol's pure parts (src/io/protocol.ts): word splitting, line checks, line cutting. */

import { describe, expect, it } from "vitest";
import { LineSplitter, MAX_LINE_BYTES, parseDriverLine, splitCommand, type Point } from "../src/io/protocol.ts";
import { parseOptions } from "../src/cli/options.ts";

const POINTS: Point[] = [
  { entry: 0, name: "AIN", pin: "-0-", output: false, digital: false },
  { entry: 1, name: "PWM LED", pin: "XB.2", output: true, digital: false },
  { entry: 2, name: "RELAY", pin: "XB.4", output: true, digital: true },
  { entry: 3, name: "GPIO2", pin: "XB.6", output: false, digital: true },
];

describe("--io-driver is split into words without a shell", () => {
  it.each([
    ["node scripts/io/simulator.mjs", ["node", "scripts/io/simulator.mjs"]],
    ["  node\t a  b ", ["node", "a", "b"]],
    [`node 'a b' "c d" e\\ f`, ["node", "a b", "c d", "e f"]],
    [`prog "say \\"hi\\" \\\\ \\n" '$HOME' *`, ["prog", `say "hi" \\ \\n`, "$HOME", "*"]],
    [`prog '' ""`, ["prog", "", ""]],
    [`prog a'b'"c"`, ["prog", "abc"]],
  ])("%s", (text, words) => {
    expect(splitCommand(text)).toEqual(words);
  });

  it.each([`prog 'open`, `prog "open`, "prog \\", "", "   "])("refuses %j", (text) => {
    expect(() => splitCommand(text)).toThrow();
  });

  it("a bad one is a usage error; a good one and --io-timeout reach the options", () => {
    expect(() => parseOptions(["--io-driver", "x 'y"], {})).toThrow(/--io-driver/);
    expect(() => parseOptions(["--io-timeout", "50"], {})).toThrow();
    const o = parseOptions([], { APIKEYD_IO_DRIVER: "node d.mjs --x 1", APIKEYD_IO_TIMEOUT: "500" });
    expect(o.ioDriver).toEqual(["node", "d.mjs", "--x", "1"]);
    expect(o.ioTimeoutMs).toBe(500);
    expect(parseOptions([], {}).ioDriver).toBeUndefined();
    expect(parseOptions([], {}).ioTimeoutMs).toBe(2000);
  });
});

describe("driver lines", () => {
  it("takes reports and acknowledgements", () => {
    expect(parseDriverLine('{"entry":0,"pin":12.5,"error":0}', POINTS)).toEqual({ kind: "report", entry: 0, pin: 12.5, error: 0 });
    expect(parseDriverLine('{"pin":true,"entry":3}', POINTS)).toEqual({ kind: "report", entry: 3, pin: true, error: 0 });
    expect(parseDriverLine('{"entry":2,"error":17}', POINTS)).toEqual({ kind: "report", entry: 2, error: 17 });
    expect(parseDriverLine('{"id":7,"ok":true,"extra":1}', POINTS)).toEqual({ kind: "ack", id: 7, ok: true });
    expect(parseDriverLine('{"id":7,"ok":false}', POINTS)).toEqual({ kind: "ack", id: 7, ok: false });
  });

  it.each([
    "", "x", "[]", "1", '{"entry":4,"pin":1}', '{"entry":"0","pin":1}', '{"entry":0.5,"pin":1}', '{"entry":0,"pin":null}',
    '{"entry":0,"pin":"1"}', '{"entry":3,"pin":0}', '{"entry":2,"pin":true}', '{"entry":1,"pin":3}', '{"entry":0,"error":1000}',
    '{"entry":0,"error":1.5}', '{"entry":0}', '{"id":-1,"ok":true}', '{"id":1}', '{"id":1,"ok":1}', '{"id":1,"ok":true,"entry":0}', "{}",
  ])("refuses %j", (line) => {
    expect(parseDriverLine(line, POINTS).kind).toBe("invalid");
  });
});

describe("the line splitter", () => {
  const cut = (chunks: (string | Buffer)[]): { lines: string[]; tooLong: number } => {
    const lines: string[] = [];
    let tooLong = 0;
    const s = new LineSplitter((l) => lines.push(l), () => tooLong++);
    for (const c of chunks) s.push(typeof c === "string" ? Buffer.from(c) : c);
    return { lines, tooLong };
  };

  it("joins half lines, drops \\r and blank lines, keeps a last line without its newline out", () => {
    expect(cut(['{"a"', ':1}\r\n\n{"b":2}\n{"c"'])).toEqual({ lines: ['{"a":1}', '{"b":2}'], tooLong: 0 });
  });

  it("decodes UTF-8 split across chunks", () => {
    const bytes = Buffer.from('"é€"\n');
    expect(cut([bytes.subarray(0, 2), bytes.subarray(2, 5), bytes.subarray(5)]).lines).toEqual(['"é€"']);
  });

  it("drops a line over the limit whole, however it arrives, and goes on with the next", () => {
    const long = "x".repeat(MAX_LINE_BYTES + 1);
    expect(cut([long + "\nok\n"])).toEqual({ lines: ["ok"], tooLong: 1 });
    expect(cut([long.slice(0, 3000), long.slice(3000), "more", "\nok\n"])).toEqual({ lines: ["ok"], tooLong: 1 });
    expect(cut(["x".repeat(MAX_LINE_BYTES) + "\n"]).lines).toHaveLength(1);
  });
});
