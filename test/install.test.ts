// scripts/install.sh staged with DESTDIR into a temp folder: the files it lays out, the unit it
// fills in (checked by systemd-analyze verify where that exists), and the wrapper command it writes.

import { execFile, spawnSync } from "node:child_process";
import { chmod, chown, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { cleanup, CONFIG_DIR, ensureBuilt, lacks, ROOT_DIR, tempDir } from "./helpers.ts";

const run = promisify(execFile);
const INSTALL = join(ROOT_DIR, "scripts", "install.sh");
const NOBODY = 65534;
const hasSystemdAnalyze = spawnSync("systemd-analyze", ["--version"]).status === 0;

beforeAll(ensureBuilt);
afterEach(cleanup);

/** Stages an install; resolves with the DESTDIR and what the script printed. */
async function stage(env: Record<string, string> = {}): Promise<{ root: string; stdout: string }> {
  const root = await tempDir("apikeyd-destdir-");
  const { stdout } = await run("bash", [INSTALL], { env: { ...process.env, DESTDIR: root, NODE: process.execPath, ...env } });
  return { root, stdout };
}

describe("scripts/install.sh with DESTDIR", () => {
  it("lays out the bundle, the factory defaults, the state folder, the unit, the command and the settings file", async () => {
    const { root, stdout } = await stage();
    const lib = join(root, "usr/lib/apikeyd");
    expect(await readFile(join(lib, "apikeyd.js"), "utf8")).toBe(await readFile(join(ROOT_DIR, "dist/apikeyd.js"), "utf8"));
    for (const file of ["apikeys.json", "properties.json", "data.json", "schema/mkc.json"]) {
      expect(await readFile(join(lib, "device-config", file), "utf8"), file).toBe(await readFile(join(CONFIG_DIR, file), "utf8"));
    }
    expect((await stat(join(root, "var/lib/apikeyd"))).mode & 0o777).toBe(0o700);
    expect((await stat(join(root, "usr/bin/apikeyd"))).mode & 0o777).toBe(0o755);
    expect(await readFile(join(root, "etc/default/apikeyd"), "utf8")).toContain("#APIKEYD_TLS_CERT=/etc/apikeyd/cert.pem");
    expect(stdout).toContain("no user created, systemd left alone");

    const unit = await readFile(join(root, "etc/systemd/system/apikeyd.service"), "utf8");
    expect(unit).not.toContain("@");
    expect(unit).toContain(`\nExecStart=${process.execPath} /usr/lib/apikeyd/apikeyd.js --port 8080 --config-dir /usr/lib/apikeyd/device-config --state-dir /var/lib/apikeyd\n`);
    for (const line of ["User=apikeyd", "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict", "StateDirectory=apikeyd", "ReadWritePaths=/var/lib/apikeyd", "ExecReload=/bin/kill -HUP $MAINPID"]) {
      expect(unit).toContain(`\n${line}\n`);
    }
    // Port 8080: no capability at all.
    expect(unit).toContain("\nAmbientCapabilities=\nCapabilityBoundingSet=\n");
  });

  it("gives CAP_NET_BIND_SERVICE, and only it, for port 80", async () => {
    const { root } = await stage({ PORT: "80" });
    const unit = await readFile(join(root, "etc/systemd/system/apikeyd.service"), "utf8");
    expect(unit).toContain(" --port 80 ");
    expect(unit).toContain("\nAmbientCapabilities=CAP_NET_BIND_SERVICE\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n");
  });

  it("refuses a bad port, and a real install without root", async () => {
    await expect(stage({ PORT: "http" })).rejects.toMatchObject({ code: 1, stderr: "install.sh: PORT must be a number from 1 to 65535, not 'http'\n" });
    if (process.getuid?.() !== 0) {
      await expect(run("bash", [INSTALL], { env: { ...process.env, DESTDIR: "" } })).rejects.toMatchObject({ code: 1 });
    }
  });

  it("writes a command that runs the installed bundle on the installed folders", async () => {
    const { root } = await stage();
    const wrapper = await readFile(join(root, "usr/bin/apikeyd"), "utf8");
    expect(wrapper).toContain('export APIKEYD_STATE_DIR="${APIKEYD_STATE_DIR:-/var/lib/apikeyd}"');
    expect(wrapper).toContain(`exec runuser -u apikeyd -- ${process.execPath} /usr/lib/apikeyd/apikeyd.js "$@"`);
  });

  // As root, the command runs as the service user: what it writes stays the service's. Staged with
  // the user "nobody" standing in for apikeyd.
  const asRoot = process.getuid?.() === 0 && spawnSync("runuser", ["-u", "nobody", "--", process.execPath, "--version"]).status === 0;
  it.skipIf(lacks(asRoot))("run by root, the command works as the service user", async () => {
    const { root } = await stage({ SERVICE_USER: "nobody" });
    await chmod(root, 0o755);
    const stateDir = join(root, "var/lib/apikeyd");
    await chown(stateDir, NOBODY, NOBODY);
    const env = { ...process.env, APIKEYD_CONFIG_DIR: join(root, "usr/lib/apikeyd/device-config"), APIKEYD_STATE_DIR: stateDir };
    // The installed command names the installed bundle; this copy names the staged one.
    const wrapper = join(root, "apikeyd-staged");
    await writeFile(wrapper, (await readFile(join(root, "usr/bin/apikeyd"), "utf8")).replaceAll("/usr/lib/apikeyd/", `${root}/usr/lib/apikeyd/`), { mode: 0o755 });
    expect((await run(wrapper, ["keys", "set", "data", "--rd", "field"], { env })).stdout).toBe(`data: rd changed in ${stateDir}/apikeys.json\n`);
    expect((await stat(join(stateDir, "apikeys.json"))).uid).toBe(NOBODY);
    expect((await run(wrapper, ["keys", "show"], { env })).stdout).toContain("\ndata        rdKey7  wrKey7\n".replace("rdKey7", "field "));
  });

  it.skipIf(lacks(hasSystemdAnalyze))("installs units that systemd-analyze verify accepts without a warning", async () => {
    for (const port of ["8080", "80"]) {
      const { root } = await stage({ PORT: port });
      const unit = join(root, "etc/systemd/system/apikeyd.service");
      const result = spawnSync("systemd-analyze", ["verify", unit], { encoding: "utf8" });
      // Warnings about the host's own units are not ours; any line about this unit is.
      expect(result.stderr.split("\n").filter((l) => l.includes("apikeyd"))).toEqual([]);
      expect(result.status).toBe(0);
    }
  });
});
