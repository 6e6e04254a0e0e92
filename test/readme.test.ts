/**
 * The README tells the truth: its error table is the catalogue, its curl walkthrough answers as shown,
 * its options are the real ones. (docs/ is checked by docs.test.ts.)
 */

import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { CATALOGUE } from "../src/http/errors.ts";
import { helpText } from "../src/cli/options.ts";
import { cleanup, closeAgents, ROOT_DIR, startServer, tempDir } from "./helpers.ts";

const run = promisify(execFile);
/** 2026-01-01 00:00:00 UTC. */
const README_CLOCK_MS = Date.UTC(2026, 0, 1);
const README = readFileSync(join(ROOT_DIR, "README.md"), "utf8");

afterEach(cleanup);
afterAll(closeAgents);

/** The text of the README section under `## title`, up to the next `## `. */
function section(title: string): string {
  const start = README.indexOf(`\n## ${title}\n`);
  expect(start, `README section "${title}"`).toBeGreaterThan(-1);
  const end = README.indexOf("\n## ", start + 4);
  return README.slice(start, end === -1 ? undefined : end);
}

describe("README", () => {
  it("opens with the two commands", () => {
    const firstLines = README.split("\n").slice(0, 6).join("\n");
    expect(firstLines).toContain("npm install && npm start");
    expect(firstLines).toContain("npm install && npm test");
  });

  it("lists exactly the code's error catalogue", () => {
    const table = README.slice(README.indexOf("<!-- error-table:start -->"), README.indexOf("<!-- error-table:end -->"));
    const rows = [...table.matchAll(/^\| (\d+) \| (JSON_ERROR_[A-Z_]+) \| (\d{3}) \|/gm)].map((m) => ({
      code: Number(m[1]),
      message: m[2],
      status: Number(m[3]),
    }));
    expect(rows).toEqual(CATALOGUE.map(({ code, message, status }) => ({ code, message, status })));
  });

  it("documents every command-line option that --help lists, and no other", () => {
    const inHelp = new Set([...helpText().matchAll(/^ {2}(--[a-z-]+)/gm)].map((m) => m[1]));
    inHelp.delete("--help");
    const configuration = section("Configuration");
    const inReadme = new Set([...configuration.matchAll(/^\| `(--[a-z-]+)/gm)].map((m) => m[1]));
    expect([...inReadme].sort()).toEqual([...inHelp].sort());
  });

  // Each walkthrough runs on a fresh server whose clock says 2026-01-01 00:00:00 UTC (the times the
  // README shows in `changed`, `lastUsed`, `graceUntil` and `confirmUntil`), reached from 127.0.0.1.
  it.each([
    ["A walk through with curl", 15],
    ["Key pairs with a life", 10],
    ["Sealed keys", 8],
  ])("answers the curl examples of %s exactly as shown", async (title, atLeast) => {
    const blocks = [...section(title).matchAll(/```console\n([\s\S]*?)```/g)].map((m) => m[1] as string);
    const steps: { command: string; expected: string[] }[] = [];
    for (const block of blocks) {
      for (const line of block.split("\n")) {
        if (line.startsWith("$ ")) steps.push({ command: line.slice(2), expected: [] });
        else if (line !== "") steps.at(-1)?.expected.push(line);
      }
    }
    expect(steps.length).toBeGreaterThan(atLeast);
    // Sealed keys: the device's fingerprint secret is the README's (its fingerprints are shown), and
    // a generated key (random) is compared by its form: 32 characters of base64url, which no chosen
    // key of that section has.
    const sealedSection = title === "Sealed keys";
    const stateDir = await tempDir();
    if (sealedSection) await writeFile(join(stateDir, "fingerprint.key"), Buffer.alloc(32, 0x5e), { mode: 0o600 });
    const masked = (lines: string[]): string[] => (sealedSection ? lines.map((l) => l.replace(/"(rd|wr|data)":"[A-Za-z0-9_-]{32}"/g, '"$1":"<generated>"')) : lines);
    const ts = await startServer({ stateDir, server: { clock: () => README_CLOCK_MS } });
    for (const { command, expected } of steps) {
      expect(command.startsWith("curl ")).toBe(true);
      const local = command.replaceAll("http://localhost:8080", ts.origin).replaceAll("http://127.0.0.1:8080", ts.origin);
      const { stdout } = await run("sh", ["-c", local]);
      expect({ command, output: masked(stdout.split("\n").filter((l) => l !== "")) }).toEqual({ command, output: masked(expected) });
    }
  });
});
