/** Faults in user input told by position only: the JSON scanner agrees with JSON.parse on what is JSON, and on where it breaks. */

import { describe, expect, it } from "vitest";
import { jsonFaultOffset, jsonFaultPosition, lineAndColumn } from "../src/common/json-position.ts";
import { seededRandom } from "./helpers.ts";

/** JSON.parse's verdict: -1 when it accepts the text, else the position its message names (undefined when it names none). */
function parseVerdict(text: string): number | undefined {
  try {
    JSON.parse(text);
    return -1;
  } catch (error) {
    const message = (error as Error).message;
    if (message === "Unexpected end of JSON input") return text.length;
    const at = /at position (\d+)/.exec(message);
    return at === null ? undefined : Number(at[1]);
  }
}

const SAMPLE = JSON.stringify(
  { keys: [{ name: "data", rd: "rdKey7", wr: "w\\\"r\u00e9\u0001", n: -12.5e+3, z: 0, t: true, f: false, u: null, e: [], o: {} }], "Json+typeRevision": 0 },
  null,
  2,
);

describe("jsonFaultOffset", () => {
  it("names the offending character of hand-picked faults, and -1 for valid JSON", () => {
    const cases: Array<[string, number]> = [
      ['[{"a":"SECRET"},]', 16],
      ['{"a":"SECRET",}', 14],
      ['{"a":SECRET}', 5],
      ['{"a":tru}', 8],
      ['{"a":"x"}}', 9],
      ['{"a":01}', 6],
      ['{"a":-}', 6],
      ['{"a":1.}', 7],
      ['{"a":1e}', 7],
      ['{"a":"\\u12G4"}', 10],
      ['{"a":"\\q"}', 7],
      ['{"a":"x\ty"}', 7],
      ['{"a":"SEC', 9],
      ["", 0],
      ["\ufeff[]", 0],
      ["[".repeat(100_000), 100_000],
      [' {"a": [1, 2.5, -0, 1E+2, "\\u00e9\\n", true, false, null, {}, []]} \r\n', -1],
    ];
    for (const [text, at] of cases) expect({ text: text.slice(0, 40), at: jsonFaultOffset(text) }).toEqual({ text: text.slice(0, 40), at });
  });

  it("agrees with JSON.parse on 3,000 seeded mutations of a document: valid or not, and where, when Node says where", () => {
    const next = seededRandom(20261123);
    const alphabet = ' \t\n{}[]:,"\\-+.0123456789eEtrufalsn/xu\u0000\u00e9';
    let faults = 0;
    for (let n = 0; n < 3_000; n++) {
      let text = SAMPLE;
      for (let edits = 1 + Math.floor(next() * 3); edits > 0; edits--) {
        const at = Math.floor(next() * (text.length + 1));
        const kind = next();
        const char = alphabet[Math.floor(next() * alphabet.length)] as string;
        if (kind < 0.4) text = text.slice(0, at) + text.slice(at + 1);
        else if (kind < 0.7) text = text.slice(0, at) + char + text.slice(at);
        else if (kind < 0.9) text = text.slice(0, at) + char + text.slice(at + 1);
        else text = text.slice(0, at);
      }
      const verdict = parseVerdict(text);
      const offset = jsonFaultOffset(text);
      if (verdict === -1) expect({ text, offset }).toEqual({ text, offset: -1 });
      else expect({ text, offset: offset === -1 ? "valid" : "fault" }).toEqual({ text, offset: "fault" });
      if (verdict !== undefined && verdict !== -1) {
        faults++;
        expect({ text, offset }).toEqual({ text, offset: verdict });
      }
    }
    expect(faults).toBeGreaterThan(500); // the positions were really compared
  });
});

describe("jsonFaultPosition", () => {
  it("says line and column, never the text", () => {
    const inventory = '[\n  {"host": "10.0.0.1", "apikeys": {"rd": "SECRETrd", "wr": "SECRETwr"}},\n]\n';
    expect(jsonFaultPosition(inventory)).toBe("line 3, column 1");
    expect(jsonFaultPosition('{"a": 1,\r\n "b": }')).toBe("line 2, column 7");
    expect(jsonFaultPosition("[1,\n")).toBe("line 2, column 1");
    expect(lineAndColumn("ab\ncd", 4)).toBe("line 2, column 2");
  });
});
