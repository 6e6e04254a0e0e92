// Start-up refusals (docs/api.md §1, §6): a damaged state file or a broken config folder stops the server
// with a StartupError naming the file, and never replaces what is on disk. Also through the bundle.

import { spawn, execFile } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { StartupError } from "../src/state/device.ts";
import { loadDevice } from "../src/state/load-device.ts";
import { cleanup, closeAgents, CONFIG_DIR, copyConfig, ROOT_DIR, tempDir, seededState } from "./helpers.ts";

afterEach(cleanup);
afterAll(closeAgents);


/** The StartupError a load throws (fails the test when it does not throw one). */
async function refusal(configDir: string, stateDir: string): Promise<StartupError> {
  const error: unknown = await loadDevice({ configDir, stateDir }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(StartupError);
  return error as StartupError;
}

/** Rewrites one JSON file of a folder through `change`. */
async function editJson(dir: string, file: string, change: (doc: Record<string, unknown>) => unknown): Promise<void> {
  const path = join(dir, file);
  await writeFile(path, JSON.stringify(change(JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>), null, 2));
}

describe("a damaged state file refuses start-up, names the file, and is left as it is", () => {
  it.each([
    ["invalid JSON", "properties.json", '{"name": "eNetMini1",'],
    ["an empty file", "process.json", ""],
    ["an object without its type tags", "httpro.json", '{"name":"user_ro","pass":"pass_ro"}'],
    ["type tags in the wrong order", "httprw.json", '{"name":"a","pass":"b","Json+typeRevision":0,"Json+typeName":"MkcJsonLib.jUser"}'],
    ["a writable member of the wrong kind", "properties.json", null],
    ["null instead of a document", "properties.json", "null"],
    ["an array instead of an object", "httpsu.json", "[]"],
    ["another type's document", "httpsu.json", null],
    ["a key with a space in apikeys.json", "apikeys.json", null],
    ["two pairs with one name in apikeys.json", "apikeys.json", null],
  ])("%s (%s)", async (what, file, text) => {
    const stateDir = await seededState();
    const path = join(stateDir, file);
    if (text !== null) await writeFile(path, text);
    else if (what.startsWith("a writable")) await editJson(stateDir, file, (d) => ({ ...d, name: 42 }));
    else if (what.startsWith("another type")) await writeFile(path, await readFile(join(CONFIG_DIR, "process.json")));
    else if (what.startsWith("a key")) {
      await editJson(stateDir, file, (d) => {
        (d["keys"] as Array<Record<string, unknown>>)[3]!["wr"] = "secret with space";
        return d;
      });
    } else {
      await editJson(stateDir, file, (d) => {
        (d["keys"] as Array<Record<string, unknown>>)[3]!["name"] = "httpro";
        return d;
      });
    }
    const before = await readFile(path);
    const error = await refusal(CONFIG_DIR, stateDir);
    expect(error.message).toContain(path);
    expect(error.message).not.toContain("secret with space");
    expect(await readFile(path)).toEqual(before);
  });

  it("a state file that cannot be read (a folder in its place)", async () => {
    const stateDir = await tempDir("apikeyd-state-");
    await mkdir(join(stateDir, "data.json"));
    const error = await refusal(CONFIG_DIR, stateDir);
    expect(error.message).toContain(join(stateDir, "data.json"));
  });
});

describe("a broken config folder refuses start-up and names the file", () => {
  it("a file that is not JSON", async () => {
    const configDir = await copyConfig();
    await writeFile(join(configDir, "httprw.json"), "name=user_rw\n");
    const error = await refusal(configDir, await tempDir());
    expect(error.message).toContain(join(configDir, "httprw.json"));
  });

  it("an endpoint without a pair in apikeys.json", async () => {
    const configDir = await copyConfig();
    await writeFile(join(configDir, "foo.json"), JSON.stringify({ name: "x", "Json+typeName": "Vendor.jFoo", "Json+typeRevision": 0 }));
    const stateDir = await tempDir();
    const error = await refusal(configDir, stateDir);
    expect(error.message).toContain(join(configDir, "foo.json"));
    expect(error.message).toContain("no key pair");
  });

  it("an endpoint whose pair was removed from apikeys.json", async () => {
    const configDir = await copyConfig();
    await editJson(configDir, "apikeys.json", (d) => ({ ...d, keys: (d["keys"] as Array<{ name: string }>).filter((p) => p.name !== "process") }));
    const error = await refusal(configDir, await tempDir());
    expect(error.message).toContain(join(configDir, "process.json"));
  });

  it.each([
    ["the type tags in the wrong order", (m: Record<string, unknown>) => ({ ...m, "Json+typeRevision": 0, "Json+typeName": "MkcJsonLib.jMqttEntry" })],
    ["a member after the type tags", (m: Record<string, unknown>) => ({ ...m, "Json+typeName": "MkcJsonLib.jMqttEntry", "Json+typeRevision": 0, extra: 1 })],
    ["no type revision", (m: Record<string, unknown>) => ({ ...m, "Json+typeName": "MkcJsonLib.jMqttEntry" })],
  ])("an object with %s", async (_what, change) => {
    const configDir = await copyConfig();
    await editJson(configDir, "properties.json", (d) => {
      // The mqtt object's own members, without its tags; `change` puts tags back, wrongly.
      const { "Json+typeName": _n, "Json+typeRevision": _r, ...mqtt } = d["mqtt"] as Record<string, unknown>;
      return { ...d, mqtt: change(mqtt) };
    });
    const error = await refusal(configDir, await tempDir());
    expect(error.message).toContain(join(configDir, "properties.json"));
    expect(error.message).toContain("/mqtt");
  });

  it("a config folder that does not exist", async () => {
    const missing = join(await tempDir(), "nope");
    const error = await refusal(missing, await tempDir());
    expect(error.message).toContain(missing);
  });
});

describe("the built bundle", () => {
  beforeAll(async () => {
    await promisify(execFile)(process.execPath, ["scripts/build.mjs"], { cwd: ROOT_DIR });
  }, 60_000);

  it("exits 1 and names the damaged state file on stderr", async () => {
    const stateDir = await seededState();
    const damaged = join(stateDir, "apikeys.json");
    await writeFile(damaged, "{");
    const child = spawn(process.execPath, [join(ROOT_DIR, "dist", "apikeyd.js"), "--host", "127.0.0.1", "--port", "0", "--config-dir", CONFIG_DIR, "--state-dir", stateDir], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    const code = await new Promise<number | null>((resolve) => child.on("close", (c) => resolve(c)));
    clearTimeout(timer);
    expect(code).toBe(1);
    expect(stderr).toContain(damaged);
    expect(await readFile(damaged, "utf8")).toBe("{");
  });
});
