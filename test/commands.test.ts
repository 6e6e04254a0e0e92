// The field-service commands through the bundle, each against a real state folder: keys show, set
// and generate, reset (with and without --keys-only, --yes, a terminal's answer), check, and the
// state folder's lock, which refuses offline changes while a server owns the folder.

import { execFileSync, spawnSync } from "node:child_process";
import { chmod, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { BUNDLE, killServers, runCli, startCli } from "./cli-harness.ts";
import { call, cleanup, closeAgents, CONFIG_DIR, copyConfig, ensureBuilt, failure, lacks, ok, ROOT_DIR, startServer, tempDir, seededState, withoutDetail } from "./helpers.ts";

beforeAll(ensureBuilt);
afterEach(async () => {
  killServers();
  await cleanup();
});
afterAll(closeAgents);


/** Every file of a folder (and its subfolders) with its content, to show that a command wrote nothing. */
async function snapshot(dir: string, out: Record<string, string> = {}, prefix = ""): Promise<Record<string, string>> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await snapshot(path, out, `${prefix}${entry.name}/`);
    else out[prefix + entry.name] = await readFile(path, "utf8");
  }
  return out;
}

const FACTORY_TABLE = [
  "pair        rd      wr",
  "properties  rdKey1  wrKey1",
  "apikeys     rdKey2  wrKey2",
  "httpro      rdKey3  wrKey3",
  "httprw      rdKey4  wrKey4",
  "httpsu      rdKey5  wrKey5",
  "process     rdKey6  wrKey6",
  "data        rdKey7  wrKey7",
  "",
  "pair        enabled  expires  origins  last used  from  grace until  confirm until  keys changed  label",
  ...["properties", "apikeys", "httpro", "httprw", "httpsu", "process", "data"].map((p) => `${p.padEnd(10)}  yes      never    any      -          -     -            -              -             `),
  "",
].join("\n");

describe("--version and keys generate", () => {
  it("--version prints the package version", async () => {
    const pkg = JSON.parse(await readFile(join(ROOT_DIR, "package.json"), "utf8")) as { version: string };
    const r = await runCli(["--version"]);
    expect(r).toEqual({ code: 0, stdout: `${pkg.version}\n`, stderr: "" });
  });

  it("keys generate prints a fresh 192-bit key that a header can carry", async () => {
    const [a, b] = await Promise.all([runCli(["keys", "generate"]), runCli(["keys", "generate"])]);
    for (const r of [a, b]) {
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^[A-Za-z0-9_-]{32}\n$/); // 24 random bytes, base64url
    }
    expect(a.stdout).not.toBe(b.stdout);
  });
});

describe("keys show", () => {
  it("prints every pair of the state folder, keys included", async () => {
    const ts = await startServer();
    await call(ts, "PUT", "/api/v1/apikeys/keys/0", { rd: "rdKey2", wr: "wrKey2", body: "rd=field-rd&wr=" });
    const r = await runCli(["keys", "show", "--state-dir", ts.stateDir]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.stdout.split("\n").slice(0, 3)).toEqual(["pair        rd        wr", "properties  field-rd  (empty: open)", "apikeys     rdKey2    wrKey2"]);
  });

  it("shows the factory pairs, and says so, before the first start", async () => {
    const stateDir = join(await tempDir(), "never-started");
    const r = await runCli(["keys", "show", "--state-dir", stateDir]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(FACTORY_TABLE);
    expect(r.stderr).toContain("these are the factory pairs");
    await expect(stat(stateDir)).rejects.toThrow(); // reading creates nothing
  });

  it("refuses a damaged key file and points to reset --keys-only", async () => {
    const stateDir = await seededState();
    await writeFile(join(stateDir, "apikeys.json"), "{ damaged");
    const r = await runCli(["keys", "show", "--state-dir", stateDir]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(`${join(stateDir, "apikeys.json")}: not valid JSON`);
    expect(r.stderr).toContain("apikeyd reset --keys-only");
  });
});

describe("keys set", () => {
  it("changes a pair durably (mode 0600) and a server started afterwards takes it", async () => {
    const stateDir = await seededState();
    const r = await runCli(["keys", "set", "properties", "--rd", "new-Rd_1", "--wr", "new-Wr_1", "--state-dir", stateDir]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`properties: rd and wr changed in ${stateDir}/apikeys.json\n`);
    // The audit lines name pair, side and fingerprint, never the key.
    expect(r.stderr).toMatch(/INFO  key changed event=key-changed source=keys-set pair=properties side=rd fingerprint=[0-9a-f]{8}\n/);
    expect(r.stderr).not.toContain("new-Rd_1");
    expect((await stat(join(stateDir, "apikeys.json"))).mode & 0o777).toBe(0o600);
    expect(await readdir(stateDir)).not.toContain("apikeyd.pid"); // the lock is given back

    const ts = await startServer({ stateDir });
    expect((await call(ts, "GET", "/api/v1/properties/name", { rd: "new-Rd_1" })).text).toBe(ok("eNetMini1"));
    expect(withoutDetail((await call(ts, "GET", "/api/v1/properties/name", { rd: "rdKey1" })).text)).toBe(failure(3, "JSON_ERROR_READ_DENIED"));
    const put = await call(ts, "PUT", "/api/v1/properties/name", { rd: "new-Rd_1", wr: "new-Wr_1", body: "name=field" });
    expect(put.text).toBe(ok("field"));
  });

  it("applies the API's key rule: 128 printable characters pass, a space or a 129th character does not", async () => {
    const stateDir = await seededState();
    const before = await snapshot(stateDir);
    for (const bad of ["a b", "x".repeat(129), "tab\there", "é"]) {
      const r = await runCli(["keys", "set", "data", `--rd=${bad}`, "--state-dir", stateDir]);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe("apikeyd: --rd: a key is 0 to 128 printable ASCII characters without spaces (0x21 to 0x7E)\n");
    }
    expect(await snapshot(stateDir)).toEqual(before);
    const longest = "-" + "~".repeat(63) + "!".repeat(64); // a leading dash goes as --wr=KEY
    expect((await runCli(["keys", "set", "data", `--wr=${longest}`, "--state-dir", stateDir])).code).toBe(0);
    expect((await runCli(["keys", "show", "--state-dir", stateDir])).stdout).toContain(`data        rdKey7  ${longest}\n`);
  });

  it("sets an empty key (open) with a warning, refuses an unknown pair and a call without keys", async () => {
    const stateDir = await seededState();
    const open = await runCli(["keys", "set", "process", "--rd", "", "--state-dir", stateDir]);
    expect(open.code).toBe(0);
    expect(open.stderr).toContain("warning: process rd is empty: anyone may read");
    const ts = await startServer({ stateDir });
    expect((await call(ts, "GET", "/api/v1/process/name")).text).toBe(ok("example"));
    await ts.stop();

    const unknown = await runCli(["keys", "set", "nosuch", "--rd", "k", "--state-dir", stateDir]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe("apikeyd: no key pair by that name; the pairs are: properties, apikeys, httpro, httprw, httpsu, process, data\n");
    const bare = await runCli(["keys", "set", "process", "--state-dir", stateDir]);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toBe("apikeyd: keys set <pair> [--rd=KEY] [--wr=KEY]: needs --rd=KEY, --wr=KEY or both, or --label, --enabled, --expires, --origins\nTry --help.\n");
  });
});

describe("keys set: the life of a pair (docs/api.md §8)", () => {
  it("sets label, enabled, expires and origins offline, the apikeys pair's too, with audit lines; keys show prints them", async () => {
    const stateDir = await seededState();
    const r = await runCli(["keys", "set", "apikeys", "--label=master key", "--enabled=false", "--expires=2031-01-02 03:04:05", "--origins=10.0.0.0/8, ::1", "--state-dir", stateDir]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`apikeys: label, enabled, expires and origins changed in ${stateDir}/apikeys.json\n`);
    expect(r.stderr).toContain("event=pair-disabled source=keys-set pair=apikeys");
    expect(r.stderr).toContain("warning: the apikeys pair is switched off or expires");
    const pair = (JSON.parse(await readFile(join(stateDir, "apikeys.json"), "utf8")) as { keys: Array<Record<string, unknown>> }).keys[1];
    expect(pair).toMatchObject({ label: "master key", enabled: false, expires: "2031-01-02 03:04:05", origins: "10.0.0.0/8, ::1" });
    const show = await runCli(["keys", "show", "--state-dir", stateDir]);
    expect(show.stdout).toContain("apikeys     NO       2031-01-02 03:04:05  10.0.0.0/8,::1  -          -     -            -              -             master key\n");
    const ts = await startServer({ stateDir });
    expect((await call(ts, "GET", "/api/v1/apikeys", { rd: "rdKey2" })).json?.meta.error).toBe(16);
  });

  it("refuses values that break the API's rules, without repeating them, and changes nothing", async () => {
    const stateDir = await seededState();
    const before = await snapshot(stateDir);
    for (const [flag, message] of [
      ["--expires=2031-02-30 00:00:00", 'a real date and time in UTC, "YYYY-MM-DD HH:MM:SS", or "" for never'],
      ["--origins=10.0.0.0/40", 'a comma-separated list of IPv4/IPv6 addresses and CIDR ranges, or "" for any'],
      ["--enabled=maybe", "true, false, 1 or 0"],
      [`--label=${"x".repeat(65)}`, "0 to 64 characters, no control characters"],
    ] as const) {
      const r = await runCli(["keys", "set", "data", flag, "--state-dir", stateDir]);
      expect([flag, r.code, r.stderr]).toEqual([flag, 1, `apikeyd: ${flag.split("=")[0]}: ${message}\n`]);
    }
    expect(await snapshot(stateDir)).toEqual(before);
    expect((await runCli(["keys", "show", "--label=x", "--state-dir", stateDir])).stderr).toContain("keys show: takes no --label");
  });

  it("a change of keys offline stamps `changed` and ends the pair's grace (its previous keys forgotten)", async () => {
    const ts = await startServer();
    expect((await call(ts, "PUT", "/api/v1/apikeys/keys/6", { rd: "rdKey2", wr: "wrKey2", body: "rd=Grace-New-Key-1&grace=3600" })).status).toBe(200);
    await ts.stop();
    expect(await readFile(join(ts.stateDir, "previous.keys"), "utf8")).toContain("rdKey7");
    const r = await runCli(["keys", "set", "data", "--rd=Offline-Key-22", "--state-dir", ts.stateDir]);
    expect(r.code).toBe(0);
    await expect(stat(join(ts.stateDir, "previous.keys"))).rejects.toThrow();
    const pair = (JSON.parse(await readFile(join(ts.stateDir, "apikeys.json"), "utf8")) as { keys: Array<Record<string, unknown>> }).keys[6];
    expect(pair).toMatchObject({ rd: "Offline-Key-22", graceUntil: 0, confirmUntil: 0 });
    expect(Math.abs((pair?.["changed"] as number) - Date.now() / 1000)).toBeLessThan(60);
  });
});

describe("usage refusals", () => {
  it("name a mistyped option or command and the one meant, never a value", async () => {
    const cases: Array<[string[], string]> = [
      [["--prot=9000"], "unknown option --prot (did you mean --port?)"],
      [["--state-dri", "/tmp/x"], "unknown option --state-dri (did you mean --state-dir?)"],
      [["--log-fromat=json"], "unknown option --log-fromat (did you mean --log-format?)"],
      [["--verbose"], "unknown option --verbose"],
      [["chek"], "unknown command (did you mean check?); the commands are: keys show, keys set, keys generate, keys fingerprint, reset, check"],
      [["keys", "shwo"], "unknown command (did you mean keys show?); the commands are: keys show, keys set, keys generate, keys fingerprint, reset, check"],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(args);
      expect([args, r.code, r.stderr]).toEqual([args, 2, `apikeyd: ${message}\nTry --help.\n`]);
      expect(r.stderr).not.toContain("9000");
    }
    const { runTool } = await import("./provision-harness.ts");
    const tool = await runTool(["--inventry", "devices.json"], await tempDir());
    expect(tool.code).toBe(2);
    expect(tool.stderr.split("\n")[0]).toBe("provision: unknown option --inventry (did you mean --inventory?)");
  });

  it("never repeat what was typed (a key given without --rd= or --wr=), say what is expected, and change nothing", async () => {
    const stateDir = await seededState();
    const before = await snapshot(stateDir);
    const KEY = "SECRETKEY9";
    const cases: Array<[string[], number, string]> = [
      [["keys", "set", "data", KEY], 2, "keys set <pair> [--rd=KEY] [--wr=KEY]: one argument too many; keys are given as --rd=KEY and --wr=KEY"],
      [["keys", "set", "data", KEY, `x${KEY}`], 2, "keys set <pair> [--rd=KEY] [--wr=KEY]: 2 arguments too many; keys are given as --rd=KEY and --wr=KEY"],
      [["keys", "set", "--rd", KEY], 2, "keys set <pair> [--rd=KEY] [--wr=KEY]: missing <pair>"],
      [["keys", "set", "data", `-${KEY}`], 2, 'argument 4 is not an option (a value that begins with "-" is given as --option=VALUE)'],
      [["keys", "set", "data", `--${KEY}`], 2, 'argument 4 is not an option (a value that begins with "-" is given as --option=VALUE)'],
      [["keys", "set", "data", `--${KEY}=${KEY}`], 2, 'argument 4 is not an option (a value that begins with "-" is given as --option=VALUE)'],
      [["keys", "set", "data", "--wr", `-${KEY}`], 2, '--wr is followed by another option, not by its value; a value that begins with "-" is given as --wr=VALUE'],
      [["keys", "set", "data", `--rd=${KEY}`, "--rd", `x${KEY}`], 2, "--rd is given more than once"],
      [["keys", "set", KEY, "--rd=x"], 1, "no key pair by that name; the pairs are: properties, apikeys, httpro, httprw, httpsu, process, data"],
      [["keys", "show", KEY], 2, "keys show: one argument too many"],
      [["keys", "show", `--rd=${KEY}`], 2, "keys show: takes no --rd"],
      [["keys", KEY], 2, "unknown command; the commands are: keys show, keys set, keys generate, keys fingerprint, reset, check"],
      [[KEY], 2, "unknown command; the commands are: keys show, keys set, keys generate, keys fingerprint, reset, check"],
      [["reset", `--yes=${KEY}`], 2, "--yes takes no value"],
    ];
    for (const [args, code, message] of cases) {
      const r = await runCli([...args, "--state-dir", stateDir]);
      expect({ args, ...r }).toEqual({ args, code, stdout: "", stderr: `apikeyd: ${message}\n${code === 2 ? "Try --help.\n" : ""}` });
    }
    expect(await snapshot(stateDir)).toEqual(before);
  });
});

describe("reset", () => {
  it("--yes rewrites every state file from the factory and leaves the config folder alone", async () => {
    const configDir = await copyConfig();
    const configBefore = await snapshot(configDir);
    const ts = await startServer({ configDir });
    await call(ts, "PUT", "/api/v1/properties/name", { rd: "rdKey1", wr: "wrKey1", body: "name=changed" });
    await call(ts, "PUT", "/api/v1/data/entries/2/pin", { rd: "rdKey7", wr: "wrKey7", body: "pin=false" });
    await call(ts, "PUT", "/api/v1/apikeys/keys/1", { rd: "rdKey2", wr: "wrKey2", body: "rd=master" });
    await ts.stop();
    await writeFile(join(ts.stateDir, "retired.json"), "{}"); // an endpoint no longer configured

    const r = await runCli(["reset", "--yes", "--state-dir", ts.stateDir, "--config-dir", configDir]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`reset 8 files in ${ts.stateDir} to the factory defaults; the factory keys are in the README (provision the device again)\n`);
    expect(r.stderr).toMatch(/WARN  factory reset event=factory-reset scope=all/);
    const state = await snapshot(ts.stateDir);
    for (const name of Object.keys(configBefore).filter((n) => n.endsWith(".json") && !n.includes("/"))) {
      expect(JSON.parse(state[name] as string), name).toEqual(JSON.parse(configBefore[name] as string));
    }
    expect(state["retired.json"]).toBe("{}");
    expect(await snapshot(configDir)).toEqual(configBefore);
  });

  it("--keys-only restores the factory keys and keeps every other setting", async () => {
    const ts = await startServer();
    await call(ts, "PUT", "/api/v1/properties/name", { rd: "rdKey1", wr: "wrKey1", body: "name=kept" });
    await call(ts, "PUT", "/api/v1/apikeys/keys/0", { rd: "rdKey2", wr: "wrKey2", body: "rd=lost&wr=lost2" });
    await ts.stop();
    const r = await runCli(["reset", "--keys-only", "--yes", "--state-dir", ts.stateDir]);
    expect(r.code).toBe(0);
    expect((await runCli(["keys", "show", "--state-dir", ts.stateDir])).stdout).toBe(FACTORY_TABLE);
    const again = await startServer({ stateDir: ts.stateDir });
    expect((await call(again, "GET", "/api/v1/properties/name", { rd: "rdKey1" })).text).toBe(ok("kept"));
  });

  it("refuses without --yes when standard input is not a terminal, and changes nothing", async () => {
    const stateDir = await seededState();
    await runCli(["keys", "set", "data", "--rd", "mine", "--state-dir", stateDir]);
    const before = await snapshot(stateDir);
    const r = await runCli(["reset", "--keys-only", "--state-dir", stateDir], { input: "yes\n" });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("standard input is not a terminal, so add --yes to confirm");
    expect(await snapshot(stateDir)).toEqual(before);
  });

  const hasScript = spawnSync("script", ["--version"]).status === 0;
  it.skipIf(lacks(hasScript))("asks on a terminal: n keeps everything, y resets", async () => {
    const stateDir = await seededState();
    await runCli(["keys", "set", "data", "--rd", "mine", "--state-dir", stateDir]);
    const before = await snapshot(stateDir);
    // `script` runs the command on a pseudo-terminal and feeds it our input.
    const onTerminal = (answer: string): string =>
      execFileSync("script", ["-qec", `${process.execPath} ${BUNDLE} reset --keys-only --state-dir ${stateDir} --config-dir ${CONFIG_DIR}`, "/dev/null"], {
        input: answer,
        encoding: "utf8",
        stdio: ["pipe", "pipe", "pipe"],
      });
    expect(() => onTerminal("n\n")).toThrow(); // exit 1: nothing changed
    expect(await snapshot(stateDir)).toEqual(before);
    const out = onTerminal("y\n");
    expect(out).toContain("Reset every key pair in");
    expect(out).toContain("[y/N]");
    expect((await runCli(["keys", "show", "--state-dir", stateDir])).stdout).toBe(FACTORY_TABLE);
  });
});

describe("check", () => {
  it("says OK (exit 0) for a sound device and writes nothing", async () => {
    const stateDir = await seededState();
    const before = await snapshot(stateDir);
    const r = await runCli(["check", "--state-dir", stateDir]);
    const uid = process.getuid?.() ?? 0;
    const files = ["apikeys", "data", "device", "httpro", "httprw", "httpsu", "process", "properties"].map((n) => `file: ${stateDir}/${n}.json: owner ${uid}, mode 600\n`);
    expect(r).toEqual({ code: 0, stdout: `${files.join("")}OK: ${CONFIG_DIR} and ${stateDir} pass every check (8 endpoints)\n`, stderr: "" });
    expect(await snapshot(stateDir)).toEqual(before);
  });

  it("lists every problem of the state folder, exit 1", async () => {
    const stateDir = await seededState();
    await writeFile(join(stateDir, "process.json"), '{"name": "example",');
    const keys = JSON.parse(await readFile(join(stateDir, "apikeys.json"), "utf8")) as { keys: Array<Record<string, unknown>> };
    (keys.keys[2] as Record<string, unknown>)["wr"] = "has space";
    await writeFile(join(stateDir, "apikeys.json"), JSON.stringify(keys));
    await chmod(join(stateDir, "apikeys.json"), 0o644);
    const props = JSON.parse(await readFile(join(stateDir, "properties.json"), "utf8")) as Record<string, unknown>;
    delete props["Json+typeRevision"];
    await writeFile(join(stateDir, "properties.json"), JSON.stringify(props));
    const before = await snapshot(stateDir);

    const r = await runCli(["check", "--state-dir", stateDir]);
    expect(r.code).toBe(1);
    // A key file readable by others is what a start repairs by itself (set to 600): a note, as the start would do it.
    expect(r.stdout.split("\n").filter((line) => !line.startsWith("file: "))).toEqual([
      `note: ${stateDir}/apikeys.json: readable by others (mode 644); the next start sets it to 600`,
      `problem: ${stateDir}/apikeys.json: /keys/2/wr: not a valid key`,
      `problem: ${stateDir}/apikeys.json: /keys/2/wr: a key is 0 to 128 printable ASCII characters without spaces`,
      `problem: ${stateDir}/process.json: not valid JSON (a damaged state file; see "Recovery" in docs/operations.md)`,
      `problem: ${stateDir}/properties.json: /: the last two members must be "Json+typeName" then "Json+typeRevision"`,
      "4 problems found",
      "",
    ]);
    expect(r.stdout).not.toContain("has space");
    expect(await snapshot(stateDir)).toEqual(before);
  });

  it("finds a config folder whose endpoint has no pair, and notes what a start would fix by itself", async () => {
    const configDir = await copyConfig();
    await writeFile(join(configDir, "extra.json"), JSON.stringify({ v: 1, "Json+typeName": "X", "Json+typeRevision": 0 }));
    const broken = await runCli(["check", "--config-dir", configDir, "--state-dir", await tempDir()]);
    expect(broken.code).toBe(1);
    expect(broken.stdout).toBe(`problem: ${join(configDir, "extra.json")}: endpoint "extra" has no key pair in apikeys.json\n1 problem found\n`);

    const stateDir = await seededState();
    await writeFile(join(stateDir, "old.json"), "{}");
    const { rm } = await import("node:fs/promises");
    await rm(join(stateDir, "httpro.json"));
    const noted = await runCli(["check", "--state-dir", stateDir]);
    expect(noted.code).toBe(0);
    expect(noted.stdout).toContain(`note: ${stateDir}/httpro.json: missing; the next start seeds it from the factory default\n`);
    expect(noted.stdout).toContain(`note: ${stateDir}/old.json: belongs to no configured endpoint; left alone\n`);
    expect(await readdir(stateDir)).not.toContain("httpro.json");
  });
});

describe("one owner per state folder", () => {
  it("refuses keys set and reset while the server runs, and says how to proceed", async () => {
    const stateDir = await seededState();
    const server = await startCli(["--state-dir", stateDir]);
    const before = await snapshot(stateDir);
    for (const args of [["keys", "set", "data", "--rd", "x"], ["reset", "--yes"], ["reset", "--keys-only"]]) {
      const r = await runCli([...args, "--state-dir", stateDir]);
      expect(r.code, args.join(" ")).toBe(1);
      expect(r.stderr).toBe(
        `apikeyd: the state folder ${stateDir} is in use by apikeyd serve (pid ${server.child.pid}): the server is running, and a change made now would be lost. ` +
          "Stop it first (sudo systemctl stop apikeyd), then run this again and start it.\n",
      );
    }
    expect(await snapshot(stateDir)).toEqual(before);
    // Reading is fine while it runs.
    expect((await runCli(["keys", "show", "--state-dir", stateDir])).stdout).toBe(FACTORY_TABLE);
    expect((await runCli(["check", "--state-dir", stateDir])).stdout).toContain(`note: in use by apikeyd serve (pid ${server.child.pid})`);

    expect(await server.stop()).toBe(0);
    expect(await readdir(stateDir)).not.toContain("apikeyd.pid");
    expect((await runCli(["keys", "set", "data", "--rd", "x", "--state-dir", stateDir])).code).toBe(0);
  });

  it("takes over the lock of a process that is gone, and a server refuses a folder a live command holds", async () => {
    const stateDir = await seededState();
    const gone = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" }).stdout;
    await writeFile(join(stateDir, "apikeyd.pid"), `${gone}\n-\nserve\n`);
    expect((await runCli(["keys", "set", "data", "--rd", "after-crash", "--state-dir", stateDir])).code).toBe(0);

    await writeFile(join(stateDir, "apikeyd.pid"), `${process.pid}\n-\nreset\n`); // this test process: alive
    const refused = await runCli(["--port", "0", "--host", "127.0.0.1", "--state-dir", stateDir]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`cannot start: the state folder ${stateDir} is in use by apikeyd reset (pid ${process.pid}); one process at a time may own it`);
  });
});
