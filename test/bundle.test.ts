/** The one-file bundle: Node built-ins only, and it serves under Node 18 where one is available. */

import { spawn, execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { call, cleanup, closeAgents, CONFIG_DIR, ensureBuilt, ok, ROOT_DIR, tempDir } from "./helpers.ts";

const BUNDLE = join(ROOT_DIR, "dist", "apikeyd.js");
const NODE18 = [process.env["APIKEYD_NODE18"], "/opt/node18/node18"].find((p) => p !== undefined && p !== "" && existsSync(p));

beforeAll(ensureBuilt);
afterEach(cleanup);
afterAll(closeAgents);

describe("dist/apikeyd.js", () => {
  // dist/provision.js too: the provisioning tool imports helpers from src/ (key rule, fingerprints).
  it.each(["apikeyd.js", "provision.js"])("%s requires nothing but Node's built-in modules", (file) => {
    const source = readFileSync(join(ROOT_DIR, "dist", file), "utf8");
    const required = new Set([...source.matchAll(/\brequire\("([^"]+)"\)/g)].map((m) => m[1] as string));
    expect(required.size).toBeGreaterThan(0);
    const builtins = new Set(builtinModules);
    for (const name of required) expect(builtins.has(name.replace(/^node:/, "")), name).toBe(true);
  });

  it.skipIf(NODE18 === undefined)("serves and stops cleanly under Node 18", async () => {
    const version = execFileSync(NODE18 as string, ["--version"], { encoding: "utf8" });
    expect(version).toMatch(/^v18\./);
    const stateDir = await tempDir();
    const child = spawn(NODE18 as string, [BUNDLE, "--host", "127.0.0.1", "--port", "0", "--config-dir", CONFIG_DIR, "--state-dir", stateDir], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let log = "";
    const port = await new Promise<number>((resolve, reject) => {
      child.stderr.on("data", (chunk: Buffer) => {
        log += chunk.toString();
        const m = /listening url=http:\/\/127\.0\.0\.1:(\d+)/.exec(log);
        if (m !== null) resolve(Number(m[1]));
      });
      child.on("exit", (code) => reject(new Error(`exited ${code}: ${log}`)));
    });
    const origin = `http://127.0.0.1:${port}`;
    expect((await call({ origin }, "GET", "/api/v1/properties/name", { rd: "rdKey1" })).text).toBe(ok("eNetMini1"));
    const put = await call({ origin }, "PUT", "/api/v1/properties/name", { rd: "rdKey1", wr: "wrKey1", body: "name=node18" });
    expect(put.text).toBe(ok("node18"));
    await closeAgents();
    const exit = new Promise<number | null>((resolve) => child.on("exit", resolve));
    child.kill("SIGTERM");
    expect(await exit).toBe(0);
    expect(JSON.parse(readFileSync(join(stateDir, "properties.json"), "utf8")).name).toBe("node18");
  });
});
