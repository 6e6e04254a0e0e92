/**
 * The one-file bundles: Node built-ins only, and they work under Node 18, the oldest Node they
 * target (Debian 12 and Raspberry Pi OS bookworm ship it).
 *
 * Node 18 is Debian's own, unpacked by scripts/node18.sh into .cache/node18 (APIKEYD_NODE18=<node>
 * names another). The Node 18 tests run when CI is set (the script is run then, and a Node 18 that
 * cannot be had fails them) or when the cache is there; otherwise they are skipped.
 */

import { spawn, execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { builtinModules } from "node:module";
import { join } from "node:path";
import { Agent } from "undici";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { call, cleanup, closeAgents, CONFIG_DIR, ensureBuilt, lacks, ok, ROOT_DIR, tempDir, HAS_OPENSSL, throwawayCertificate } from "./helpers.ts";

const BUNDLES = ["apikeyd.js", "provision.js"] as const;
const SERVER = join(ROOT_DIR, "dist", "apikeyd.js");
const TOOL = join(ROOT_DIR, "dist", "provision.js");
const SCRIPT = join(ROOT_DIR, "scripts", "node18.sh");
const CACHED = join(ROOT_DIR, ".cache", "node18", "bin", "node");

const GIVEN = process.env["APIKEYD_NODE18"] ?? "";
const CI = !["", "0", "false"].includes(process.env["CI"] ?? "");
const WANTED = GIVEN !== "" || CI || existsSync(CACHED);

/** The Node 18 to run the bundles under: the one given, else the script's (which fetches it when not cached). */
function node18(): string {
  if (GIVEN !== "") {
    if (!existsSync(GIVEN)) throw new Error(`APIKEYD_NODE18=${GIVEN}: no such file`);
    return GIVEN;
  }
  try {
    return execFileSync("bash", [SCRIPT], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
  } catch (error) {
    const stderr = String((error as { stderr?: unknown }).stderr ?? "");
    throw new Error(`scripts/node18.sh could not provide Node 18${CI ? " (CI is set: the bundle must be tested under Node 18)" : ""}:\n${stderr}`, {
      cause: error,
    });
  }
}

let NODE18 = "";

beforeAll(ensureBuilt);
afterEach(cleanup);
afterAll(closeAgents);

/** The bundle's require() calls, without the node: prefix. */
function requiredBy(file: string): string[] {
  const source = readFileSync(join(ROOT_DIR, "dist", file), "utf8");
  return [...new Set([...source.matchAll(/\brequire\("([^"]+)"\)/g)].map((m) => (m[1] as string).replace(/^node:/, "")))];
}

describe("the bundles", () => {
  // dist/provision.js too: the provisioning tool imports helpers from src/ (key rule, fingerprints).
  it.each(BUNDLES)("%s requires nothing but Node's built-in modules", (file) => {
    const required = requiredBy(file);
    expect(required.length).toBeGreaterThan(0);
    const builtins = new Set(builtinModules);
    for (const name of required) expect(builtins.has(name), name).toBe(true);
  });
});

/** Runs a bundle under Node 18 to its end. */
function run18(args: readonly string[], cwd = ROOT_DIR): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(NODE18, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** Starts the server bundle under Node 18 on a free port; resolves once it listens. */
async function serve18(stateDir: string, extra: readonly string[] = []) {
  const child = spawn(NODE18, [SERVER, "--host", "127.0.0.1", "--port", "0", "--config-dir", CONFIG_DIR, "--state-dir", stateDir, ...extra], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
  let log = "";
  const listening = await new Promise<{ scheme: string; port: number }>((resolve, reject) => {
    child.stderr.on("data", (chunk: Buffer) => {
      log += chunk.toString();
      const m = /listening url=(https?):\/\/127\.0\.0\.1:(\d+)/.exec(log);
      if (m !== null) resolve({ scheme: m[1] as string, port: Number(m[2]) });
    });
    child.on("exit", (code) => reject(new Error(`exited ${code}: ${log}`)));
  });
  return { child, exited, port: listening.port, origin: `${listening.scheme}://127.0.0.1:${listening.port}` };
}

describe.skipIf(!WANTED)("under Node 18", () => {
  beforeAll(() => {
    NODE18 = node18();
    expect(execFileSync(NODE18, ["--version"], { encoding: "utf8" })).toMatch(/^v18\./);
  }, 120_000);

  it.each(BUNDLES)("%s requires nothing but Node 18's built-in modules", (file) => {
    const builtins = new Set(JSON.parse(execFileSync(NODE18, ["-p", 'JSON.stringify(require("node:module").builtinModules)'], { encoding: "utf8" })) as string[]);
    for (const name of requiredBy(file)) expect(builtins.has(name), name).toBe(true);
  });

  it("the server serves a read and a write, and stops cleanly", async () => {
    const stateDir = await tempDir();
    const server = await serve18(stateDir);
    try {
      const { origin } = server;
      expect((await call({ origin }, "GET", "/api/v1/properties/name", { rd: "rdKey1" })).text).toBe(ok("eNetMini1"));
      const put = await call({ origin }, "PUT", "/api/v1/properties/name", { rd: "rdKey1", wr: "wrKey1", body: "name=node18" });
      expect(put.text).toBe(ok("node18"));
      // Sealed keys (api.md §9) on Node 18, which has no one-shot crypto.hash: the createHash path.
      expect((await call({ origin }, "PUT", "/api/v1/apikeys/sealed", { rd: "rdKey2", wr: "wrKey2", body: "sealed=true" })).text).toBe(ok(true));
      expect((await call({ origin }, "GET", "/api/v1/properties/name", { rd: "rdKey1" })).text).toBe(ok("node18"));
      expect((await call({ origin }, "GET", "/api/v1/properties/name", { rd: "rdKey1x" })).status).toBe(401);
      expect((await call({ origin }, "GET", "/api/v1/apikeys/keys/0/rd", { rd: "rdKey2" })).text).toMatch(/"data":"sealed:[0-9a-f]{8}"/);
      await closeAgents();
      server.child.kill("SIGTERM");
      expect(await server.exited).toBe(0);
    } finally {
      server.child.kill("SIGKILL");
    }
    expect(JSON.parse(readFileSync(join(stateDir, "properties.json"), "utf8")).name).toBe("node18");
    // The field-service commands run too, on the state just written.
    const check = await run18([SERVER, "check", "--config-dir", CONFIG_DIR, "--state-dir", stateDir]);
    expect(check.code, check.stderr).toBe(0);
  });

  it("dist/provision.js prints its usage, and gives a Node 18 server fresh keys", async () => {
    const help = await run18([TOOL, "--help"]);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^Usage: node dist\/provision\.js /);

    const dir = await tempDir();
    // The tool checks that old keys are refused: a throttle those deliberate wrong keys never reach.
    const server = await serve18(await tempDir(), ["--throttle-attempts", "1000"]);
    try {
      const inventory = join(dir, "devices.json");
      const out = join(dir, "keys.json");
      await writeFile(inventory, JSON.stringify([`127.0.0.1:${server.port}`]));
      const provision = await run18([TOOL, "--inventory", inventory, "--out", out, "--device-throttle", "1000/60"], dir);
      expect(provision.code, provision.stderr).toBe(0);
      const keys = JSON.parse(await readFile(out, "utf8")) as Record<string, Record<string, { rd: string; wr: string }>>;
      const apikeys = keys[`127.0.0.1:${server.port}`]?.["apikeys"];
      expect(apikeys).toBeDefined();
      const origin = server.origin;
      expect((await call({ origin }, "GET", "/api/v1/apikeys", { rd: apikeys?.rd ?? "" })).status).toBe(200);
      expect((await call({ origin }, "GET", "/api/v1/apikeys", { rd: "rdKey2" })).status).toBe(401);
      await closeAgents();
      server.child.kill("SIGTERM");
      expect(await server.exited).toBe(0);
    } finally {
      server.child.kill("SIGKILL");
    }
  });

  // Node 18 with Debian's OpenSSL 3.0: the TLS that the field runs.
  it.skipIf(lacks(HAS_OPENSSL))("the server serves HTTPS", async () => {
    const { certFile, keyFile } = await throwawayCertificate();
    const server = await serve18(await tempDir(), ["--tls-cert", certFile, "--tls-key", keyFile]);
    const dispatcher = new Agent({ connect: { ca: await readFile(certFile, "utf8") } });
    try {
      expect(server.origin).toBe(`https://127.0.0.1:${server.port}`);
      expect((await call(server, "GET", "/api/v1/properties/name", { rd: "rdKey1", dispatcher })).text).toBe(ok("eNetMini1"));
      await dispatcher.close();
      server.child.kill("SIGTERM");
      expect(await server.exited).toBe(0);
    } finally {
      server.child.kill("SIGKILL");
    }
  });
});
