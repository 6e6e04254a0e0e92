// Who the state folder trusts (docs/security.md): a folder or state file of another user, or one
// that group or others may write, is refused at start and by `check`; a state file that is a link
// is refused rather than followed; a file the server cannot make private is a refusal naming it,
// never a stack trace. The tests change owners, so they run as root (CI does).

import { spawnSync } from "node:child_process";
import { chmod, chown, mkdir, readFile, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { StartupError } from "../src/state/device.ts";
import { loadDevice } from "../src/state/load-device.ts";
import { BUNDLE, runCli } from "./cli-harness.ts";
import { cleanup, CONFIG_DIR, ensureBuilt, lacks, tempDir, seededState } from "./helpers.ts";

beforeAll(ensureBuilt);
afterEach(cleanup);

const asRoot = process.getuid?.() === 0;
const NOBODY = 65534;


async function startRefusal(stateDir: string): Promise<string> {
  const error = await loadDevice({ configDir: CONFIG_DIR, stateDir }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(StartupError);
  return (error as StartupError).message;
}

async function checkProblems(stateDir: string): Promise<string[]> {
  const r = await runCli(["check", "--state-dir", stateDir]);
  expect(r.code).toBe(1);
  return r.stdout.split("\n").filter((line) => line.startsWith("problem: "));
}

describe("a state folder another user could have written", () => {
  it.skipIf(lacks(asRoot))("refuses a state folder that belongs to another user", async () => {
    const stateDir = await seededState();
    await chown(stateDir, NOBODY, NOBODY);
    const reason = `state folder ${stateDir}: belongs to user id ${NOBODY}, not to the user the server runs as (0); chown it to that user`;
    expect(await startRefusal(stateDir)).toBe(reason);
    expect(await checkProblems(stateDir)).toEqual([`problem: ${reason}`]);
  });

  it.skipIf(lacks(asRoot))("refuses a key file that belongs to another user, even one with its own keys", async () => {
    const stateDir = await seededState();
    const planted = join(stateDir, "apikeys.json");
    await writeFile(planted, (await readFile(planted, "utf8")).replace("rdKey2", "planted"));
    await chown(planted, NOBODY, NOBODY);
    const reason = `${planted}: belongs to user id ${NOBODY}, not to the user the server runs as (0); chown it to that user`;
    expect(await startRefusal(stateDir)).toBe(reason);
    expect(await checkProblems(stateDir)).toEqual([`problem: ${reason}`]);
  });

  it("refuses a state folder or a state file that group or others may write", async () => {
    const stateDir = await seededState();
    await chmod(stateDir, 0o777);
    const folderReason = `state folder ${stateDir}: writable by its group (mode 777); chmod go-w it`;
    expect(await startRefusal(stateDir)).toBe(folderReason);
    expect(await checkProblems(stateDir)).toEqual([`problem: ${folderReason}`]);

    await chmod(stateDir, 0o700);
    await chmod(join(stateDir, "properties.json"), 0o602);
    const fileReason = `${join(stateDir, "properties.json")}: writable by others (mode 602); chmod go-w it`;
    expect(await startRefusal(stateDir)).toBe(fileReason);
    expect(await checkProblems(stateDir)).toEqual([`problem: ${fileReason}`]);
    expect((await stat(join(stateDir, "properties.json"))).mode & 0o777).toBe(0o602); // refused, not repaired
  });

  it("refuses a state file that is a symbolic link, and changes nothing where it points", async () => {
    const stateDir = await seededState();
    const elsewhere = join(await tempDir(), "keys.json");
    await writeFile(elsewhere, await readFile(join(stateDir, "apikeys.json")), { mode: 0o644 });
    await chmod(elsewhere, 0o644);
    const { rm } = await import("node:fs/promises");
    await rm(join(stateDir, "apikeys.json"));
    await symlink(elsewhere, join(stateDir, "apikeys.json"));
    const reason = `${join(stateDir, "apikeys.json")}: is a symbolic link; a state file must be a plain file (replace the link by the file it points to)`;
    expect(await startRefusal(stateDir)).toBe(reason);
    expect((await stat(elsewhere)).mode & 0o777).toBe(0o644); // no chmod through the link
    expect(await checkProblems(stateDir)).toEqual([`problem: ${reason}`]);
  });
});

describe("a state file that is not a plain file", () => {
  it("a FIFO under a state file's name is refused at once, never waited on", async () => {
    const stateDir = await seededState();
    const { rm } = await import("node:fs/promises");
    await rm(join(stateDir, "properties.json"));
    spawnSync("mkfifo", ["-m", "600", join(stateDir, "properties.json")]);
    expect(await startRefusal(stateDir)).toBe(`${join(stateDir, "properties.json")}: cannot be read (ENOTREG)`);
  });
});

describe("a server run as a user who cannot change a state file", () => {
  it.skipIf(lacks(asRoot))("refuses to start naming the file, without a stack trace", async () => {
    // The folder is the service user's, one file in it root's and readable by all: the service
    // cannot make it private (chmod is EPERM for a file of another user).
    const stateDir = join(await tempDir(), "state");
    await mkdir(stateDir, { mode: 0o700 });
    await loadDevice({ configDir: CONFIG_DIR, stateDir });
    await chown(stateDir, NOBODY, NOBODY);
    for (const name of ["apikeys", "data", "device", "httpro", "httprw", "httpsu", "process"]) await chown(join(stateDir, `${name}.json`), NOBODY, NOBODY);
    await chmod(join(stateDir, "properties.json"), 0o644);
    await chmod(join(stateDir, ".."), 0o755);
    const r = spawnSync(process.execPath, [BUNDLE, "--config-dir", CONFIG_DIR, "--state-dir", stateDir, "--port", "0"], { uid: NOBODY, gid: NOBODY, encoding: "utf8", timeout: 10_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`cannot start: ${join(stateDir, "properties.json")}: belongs to user id 0, not to the user the server runs as (${NOBODY}); chown it to that user`);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});
