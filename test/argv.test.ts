// The command-line parser: its fast path (no node parseArgs, which costs a start about half a
// millisecond) must agree with node's strict parseArgs on every command line, accepted or refused.

import { parseArgs } from "node:util";
import { describe, expect, it } from "vitest";
import { parseArgv, UsageError, type ArgSpec } from "../src/cli/argv.ts";
import { seededRandom } from "./helpers.ts";

const SPEC: ArgSpec = {
  port: { type: "string" },
  "state-dir": { type: "string" },
  rd: { type: "string" },
  help: { type: "boolean", short: "h" },
  yes: { type: "boolean", short: "y" },
};
const ONCE = ["rd"];
const WORDS = ["--port", "8080", "--port=1", "--port=", "--state-dir", "/x", "--rd=k", "--rd", "-k", "--help", "--help=1", "-h", "-y", "--yes", "--", "keys", "set", "--nope", "--nope=1", "", "-", "--RD=x"];

/** What node's strict parseArgs makes of a command line, with our once rule: values, or "refused". */
function reference(args: string[]): unknown {
  try {
    const parsed = parseArgs({ args, options: SPEC, strict: true, allowPositionals: true, tokens: true });
    if ((parsed.tokens ?? []).filter((t) => t.kind === "option" && t.name === "rd").length > 1) return "refused";
    return { values: { ...parsed.values }, positionals: parsed.positionals };
  } catch {
    return "refused";
  }
}

function ours(args: string[]): unknown {
  try {
    const parsed = parseArgv(args, SPEC, { positionals: true, once: ONCE });
    return { values: { ...parsed.values }, positionals: parsed.positionals };
  } catch (error) {
    if (error instanceof UsageError) return "refused";
    throw error;
  }
}

describe("parseArgv", () => {
  it("agrees with node's strict parseArgs on 3,000 seeded command lines", () => {
    const random = seededRandom(20261126);
    for (let n = 0; n < 3_000; n++) {
      const args = Array.from({ length: Math.floor(random() * 6) }, () => WORDS[Math.floor(random() * WORDS.length)] as string);
      expect([args, ours(args)]).toEqual([args, reference(args)]);
    }
  });
});
