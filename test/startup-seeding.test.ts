// A first start seeds the state folder with every endpoint's factory document. The seeds are
// written side by side (start-up time); these tests hold that to the same outcome as one by one.

import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { loadFactory } from "../src/state/config-folder.ts";
import { StartupError } from "../src/state/device.ts";
import { loadDevice } from "../src/state/load-device.ts";
import { fileText } from "../src/state/state-file.ts";
import { FaultFs } from "./fault-fs.ts";
import { cleanup, closeAgents, CONFIG_DIR, tempDir } from "./helpers.ts";

afterEach(cleanup);
afterAll(closeAgents);

describe("a first start seeds the state folder", () => {
  it("writes every endpoint's factory document, owner-only, and leaves no temporary file", async () => {
    const stateDir = await tempDir("apikeyd-state-");
    const { factory } = await loadFactory(CONFIG_DIR);
    const device = await loadDevice({ configDir: CONFIG_DIR, stateDir });
    expect([...device.endpoints.keys()]).toEqual([...factory.keys()]);
    const names = (await readdir(stateDir)).filter((n) => n.endsWith(".json")).sort();
    expect(names).toEqual([...factory.keys()].map((n) => `${n}.json`).sort());
    for (const [name, doc] of factory) {
      expect(await readFile(join(stateDir, `${name}.json`), "utf8"), name).toBe(fileText(doc));
      expect((await stat(join(stateDir, `${name}.json`))).mode & 0o777, name).toBe(0o600);
    }
    expect((await readdir(stateDir)).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });

  it("refuses to start when the seeds cannot be flushed, naming every file in endpoint order", async () => {
    const stateDir = await tempDir("apikeyd-state-");
    const { factory } = await loadFactory(CONFIG_DIR);
    const fs = new FaultFs();
    fs.fail("sync", "EIO");
    const error: unknown = await loadDevice({ configDir: CONFIG_DIR, stateDir, fs }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StartupError);
    expect((error as StartupError).message.split("\n")).toEqual(
      [...factory.keys()].map((name) => `${join(stateDir, `${name}.json`)}: cannot be seeded (EIO)`),
    );
    expect((await readdir(stateDir)).filter((n) => n.endsWith(".json") || n.endsWith(".tmp"))).toEqual([]);
  });
});
