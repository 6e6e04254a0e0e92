/**
 * The documentation tells the truth and stands alone: docs/api.md's error table is the code's
 * catalogue (with the codes not built yet marked planned), the commands table of docs/operations.md
 * is --help's, every relative link of the README and docs/ leads to a file (and heading) that exists,
 * and no file of the repository refers to anything outside it.
 */

import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { CATALOGUE } from "../src/http/errors.ts";
import { helpText } from "../src/cli/options.ts";
import { ROOT_DIR } from "./helpers.ts";

const PLANNED = "**Planned (not built yet).**";
const read = (path: string): string => readFileSync(join(ROOT_DIR, path), "utf8");
const DOC_FILES = ["README.md", ...readdirSync(join(ROOT_DIR, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)];

/** Markdown without its fenced code blocks (blank lines keep the line numbers). */
function withoutFences(markdown: string): string[] {
  let fenced = false;
  return markdown.split("\n").map((line) => {
    if (/^\s*```/.test(line)) {
      fenced = !fenced;
      return "";
    }
    return fenced ? "" : line;
  });
}

/** The anchors GitHub gives the headings of a Markdown file (lower case, punctuation dropped, spaces as '-', repeats numbered). */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  for (const line of withoutFences(markdown)) {
    const heading = /^#{1,6} (.*)$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const text = heading.replace(/\[([^\]]*)\]\([^)]*\)/g, "$1");
    const slug = text.trim().toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "").replace(/ /g, "-");
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    result.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return result;
}

/** Every link target of a Markdown file, outside code blocks and code spans, with its line number. */
function links(markdown: string): { line: number; target: string }[] {
  const found: { line: number; target: string }[] = [];
  withoutFences(markdown).forEach((text, i) => {
    const prose = text.replace(/`[^`]*`/g, "code");
    for (const m of prose.matchAll(/\]\(([^)\s]+)\)/g)) found.push({ line: i + 1, target: m[1] as string });
  });
  return found;
}

/** The files of the repository: those git tracks or would track; without git, the tree minus what .gitignore names. */
function repositoryFiles(): string[] {
  try {
    const out = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard", "-z"], { cwd: ROOT_DIR, encoding: "utf8" });
    return out.split("\0").filter((f) => f !== "" && existsSync(join(ROOT_DIR, f)));
  } catch {
    const skip = new Set([".git", "node_modules", "dist", "var", "coverage", "bench-results"]);
    const walk = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
        if (skip.has(e.name)) return [];
        const path = join(dir, e.name);
        return e.isDirectory() ? walk(path) : [relative(ROOT_DIR, path)];
      });
    return walk(ROOT_DIR);
  }
}

describe("docs/api.md", () => {
  const api = read("docs/api.md");

  it("keeps the section numbers the code refers to (§1 to §12, in order)", () => {
    const numbers = [...api.matchAll(/^## (\d+)\. /gm)].map((m) => Number(m[1]));
    expect(numbers).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  });

  it("lists every code of the catalogue with its message and status, and marks the others planned", () => {
    const table = api.slice(api.indexOf("<!-- error-table:start -->"), api.indexOf("<!-- error-table:end -->"));
    const rows = [...table.matchAll(/^\| (\d+) \| (JSON_ERROR_[A-Z_]+) \| (\d{3}) \| (.*) \|$/gm)].map((m) => ({
      code: Number(m[1]),
      message: m[2],
      status: Number(m[3]),
      planned: (m[4] as string).includes(PLANNED),
    }));
    expect(rows.map((r) => r.code)).toEqual(rows.map((_, i) => i));
    const built = rows.filter((r) => !r.planned).map(({ code, message, status }) => ({ code, message, status }));
    expect(built).toEqual(CATALOGUE.map(({ code, message, status }) => ({ code, message, status })));
  });
});

describe("docs/operations.md", () => {
  it("lists the field-service commands exactly as --help writes them (keys as --rd=KEY: a key may begin with '-')", () => {
    const help = helpText();
    const block = help.slice(help.indexOf("\nCommands"), help.indexOf("\n\n", help.indexOf("\nCommands")));
    const inHelp = block.split("\n").slice(2).map((line) => line.trim().split(/ {2,}/)[0]);
    const table = /\| command \| what it does \|\n[\s\S]*?\n\n/.exec(read("docs/operations.md"))?.[0] ?? "";
    const inDocs = [...table.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]);
    expect(inHelp).toContain("keys set <pair> [--rd=KEY] [--wr=KEY]");
    expect(inDocs).toEqual(inHelp);
  });
});

describe("the README and docs/", () => {
  it("link only to files and headings that exist", () => {
    const broken: string[] = [];
    for (const file of DOC_FILES) {
      for (const { line, target } of links(read(file))) {
        if (/^[a-z]+:/i.test(target)) continue; // https:, mailto:
        const [path = "", anchor] = target.split("#", 2);
        const resolved = path === "" ? join(ROOT_DIR, file) : resolve(dirname(join(ROOT_DIR, file)), decodeURIComponent(path));
        const where = `${file}:${line} -> ${target}`;
        if (!resolved.startsWith(ROOT_DIR + "/") || !existsSync(resolved)) broken.push(`${where} (no such file in the repository)`);
        else if (anchor !== undefined && (!resolved.endsWith(".md") || !anchors(readFileSync(resolved, "utf8")).has(anchor)))
          broken.push(`${where} (no such heading)`);
      }
    }
    expect(broken).toEqual([]);
  });

  it("index every file of docs/ in the README", () => {
    const indexed = new Set(links(read("README.md")).map((l) => l.target.split("#")[0]));
    expect(DOC_FILES.filter((f) => f.startsWith("docs/") && !indexed.has(f))).toEqual([]);
  });
});

describe("the repository", () => {
  it("refers to nothing outside itself", () => {
    // Written as patterns so that this file does not match itself.
    const outside = [/\.\.\/shared\b/, /\bSPEC\.md\b/, /\bSPEC §/, /\bSPEC's\b/, /\/work\/(shared|main|wt-)/];
    const offending: string[] = [];
    for (const file of repositoryFiles()) {
      const path = join(ROOT_DIR, file);
      if (statSync(path).size > 2_000_000) continue;
      const text = readFileSync(path, "utf8");
      if (text.includes("\0")) continue; // binary
      text.split("\n").forEach((line, i) => {
        if (outside.some((p) => p.test(line))) offending.push(`${file}:${i + 1}: ${line.trim()}`);
      });
    }
    expect(offending).toEqual([]);
  });
});
