// Fingerprints of keys in log lines (key-changed) are keyed by a per-device secret, so that a log line
// is no test for guesses at a short key: HMAC-SHA-256 with the 32 bytes of <state>/fingerprint.key
// (mode 600, made once and exclusively, never served). `keys fingerprint` computes the same for a
// key read from standard input.

import { createHash } from "node:crypto";
import { readFile, stat, writeFile, chmod } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { FingerprintSecretError, loadFingerprintSecret } from "../src/access/fingerprint-secret.ts";
import { fingerprint } from "../src/access/keys.ts";
import { killServers, runCli, startCli, type CliServer } from "./cli-harness.ts";
import { call, cleanup, closeAgents, ensureBuilt, tempDir } from "./helpers.ts";

beforeAll(ensureBuilt);
afterEach(async () => {
  killServers();
  await cleanup();
});
afterAll(closeAgents);

const MASTER = { rd: "rdKey2", wr: "wrKey2" };
const SECRET_FILE = "fingerprint.key";

/** Sets the rd key of pair `index` over HTTP and returns the fingerprint the log line gives it. */
async function setKey(server: CliServer, index: number, key: string): Promise<string> {
  const before = server.log().length;
  expect((await call(server, "PUT", `/api/v1/apikeys/keys/${index}`, { ...MASTER, body: `rd=${key}` })).status).toBe(200);
  for (let waited = 0; waited < 5_000; waited += 20) {
    const m = /key changed .*fingerprint=([0-9a-f]{8})\n/.exec(server.log().slice(before));
    if (m !== null) return m[1] as string;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`no key-changed line:\n${server.log()}`);
}

describe("fingerprints in the log", () => {
  it("a 4-letter key's fingerprint matches no candidate hashed with SHA-256 (it did: the old unsalted prefix)", async () => {
    const server = await startCli(["--state-dir", await tempDir()]);
    const logged = await setKey(server, 0, "qzvk");
    expect(server.log()).not.toContain("qzvk");
    const letters = "abcdefghijklmnopqrstuvwxyz";
    const found: string[] = [];
    for (const a of letters) for (const b of letters) for (const c of letters) for (const d of letters) {
      const candidate = a + b + c + d;
      if (createHash("sha256").update(candidate).digest("hex").startsWith(logged)) found.push(candidate);
    }
    expect(found).not.toContain("qzvk");
    expect(found.length).toBeLessThanOrEqual(1); // 26^4 candidates over 2^32 prefixes: a chance match at most
  });

  it("two devices give the same key different fingerprints; one device the same across restarts", async () => {
    const stateA = await tempDir();
    const stateB = await tempDir();
    const a = await startCli(["--state-dir", stateA]);
    const b = await startCli(["--state-dir", stateB]);
    const onA = await setKey(a, 0, "Same-Key-9");
    const onB = await setKey(b, 0, "Same-Key-9");
    expect(onA).not.toBe(onB);
    expect(await a.stop()).toBe(0);
    const again = await startCli(["--state-dir", stateA]);
    expect(await setKey(again, 3, "Same-Key-9")).toBe(onA);
    // A SIGHUP reload keeps the secret too: a hand-edited key is logged with the same fingerprint.
    const file = join(stateA, "apikeys.json");
    const doc = JSON.parse(await readFile(file, "utf8")) as { keys: Array<{ rd: string }> };
    (doc.keys[4] as { rd: string }).rd = "Same-Key-9"; // httpsu
    await writeFile(file, JSON.stringify(doc, null, 2) + "\n");
    again.child.kill("SIGHUP");
    await again.waitForLog(/source=reload pair=httpsu side=rd fingerprint=/);
    expect(again.log()).toContain(`source=reload pair=httpsu side=rd fingerprint=${onA}\n`);
  });

  it("the secret is 32 bytes in a file of mode 600, made at the first start, and no request reaches it", async () => {
    const stateDir = await tempDir();
    const server = await startCli(["--state-dir", stateDir]);
    const path = join(stateDir, SECRET_FILE);
    const info = await stat(path);
    expect(info.mode & 0o777).toBe(0o600);
    const secret = await readFile(path);
    expect(secret.length).toBe(32);
    const traces = [secret.toString("hex"), secret.toString("base64"), secret.toString("base64url"), secret.toString("latin1")];
    for (const target of ["/api/v1/fingerprint.key", "/api/v1/fingerprint", "/api/v1/fingerprint.key/", "/api/v1/..%2Ffingerprint.key", "/api/v1/%2e%2e/fingerprint.key", "/api/v1/device/..%2f..%2ffingerprint.key"]) {
      for (const keys of [{}, MASTER, { rd: "rdKey1" }]) {
        const answer = await call(server, "GET", target, keys);
        expect(answer.json?.meta.error, target).not.toBe(0); // 404 or error 1 (path not found)
        for (const t of traces) expect(answer.text).not.toContain(t);
      }
    }
    for (const t of traces) expect(server.log()).not.toContain(t);
  });

  it("keys fingerprint prints, for keys on standard input, what the log shows; never takes a key from argv", async () => {
    const stateDir = await tempDir();
    const server = await startCli(["--state-dir", stateDir]);
    const logged = await setKey(server, 0, "Field-Key-41");
    const other = await setKey(server, 6, "Field-Key-42");
    expect(await server.stop()).toBe(0);
    const one = await runCli(["keys", "fingerprint", "--state-dir", stateDir], { input: "Field-Key-41\n" });
    expect(one).toMatchObject({ code: 0, stdout: `${logged}\n` });
    const two = await runCli(["keys", "fingerprint", "--state-dir", stateDir], { input: "Field-Key-41\r\nField-Key-42" });
    expect(two).toMatchObject({ code: 0, stdout: `${logged}\n${other}\n` });
    const inArgv = await runCli(["keys", "fingerprint", "Field-Key-41", "--state-dir", stateDir]);
    expect(inArgv.code).toBe(2);
    expect(inArgv.stdout + inArgv.stderr).not.toContain("Field-Key-41");
    const notAKey = await runCli(["keys", "fingerprint", "--state-dir", stateDir], { input: "Field Key 41\n" });
    expect(notAKey.code).toBe(1);
    expect(notAKey.stderr).toContain("line 1 of standard input is not a key");
    expect(notAKey.stderr).not.toContain("Field Key 41");
    expect((await runCli(["keys", "fingerprint", "--state-dir", stateDir])).code).toBe(2); // nothing on stdin
  });

  it("keys set logs the fingerprint the command gives, making the secret if the server never ran; reset keeps it", async () => {
    const stateDir = await tempDir();
    const missing = await runCli(["keys", "fingerprint", "--state-dir", stateDir], { input: "x\n" });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`${SECRET_FILE}: missing`);
    const set = await runCli(["keys", "set", "properties", "--rd=Offline-Key-7", "--state-dir", stateDir]);
    expect(set.code).toBe(0);
    const logged = /fingerprint=([0-9a-f]{8})/.exec(set.stderr)?.[1];
    expect(logged).toBeDefined();
    expect((await stat(join(stateDir, SECRET_FILE))).mode & 0o777).toBe(0o600);
    expect((await runCli(["keys", "fingerprint", "--state-dir", stateDir], { input: "Offline-Key-7\n" })).stdout).toBe(`${logged}\n`);
    const before = await readFile(join(stateDir, SECRET_FILE));
    expect((await runCli(["reset", "--yes", "--state-dir", stateDir])).code).toBe(0);
    expect(await readFile(join(stateDir, SECRET_FILE))).toEqual(before);
  });

  it("a damaged secret file stops the start with the reason, never its content", async () => {
    const stateDir = await tempDir();
    await writeFile(join(stateDir, SECRET_FILE), "short-secret-text", { mode: 0o600 });
    const r = await runCli(["--state-dir", stateDir, "--port", "0", "--host", "127.0.0.1"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${SECRET_FILE}: damaged (17 bytes, not 32)`);
    expect(r.stderr).not.toContain("short-secret-text");
  });
});

describe("loadFingerprintSecret", () => {
  it("makes the file once: processes racing on a new folder all get the same secret", async () => {
    const stateDir = await tempDir();
    const secrets = await Promise.all(Array.from({ length: 8 }, () => loadFingerprintSecret(stateDir, { create: true })));
    for (const s of secrets) expect(s).toEqual(secrets[0]);
    expect(await readFile(join(stateDir, SECRET_FILE))).toEqual(secrets[0]);
    expect(fingerprint("k", secrets[0] as Buffer)).toMatch(/^[0-9a-f]{8}$/);
  });

  it("reads only unless asked to make it; sets a loose mode to 600 with a warning", async () => {
    const stateDir = await tempDir();
    await expect(loadFingerprintSecret(stateDir)).rejects.toBeInstanceOf(FingerprintSecretError);
    const made = await loadFingerprintSecret(stateDir, { create: true });
    await chmod(join(stateDir, SECRET_FILE), 0o644);
    const warnings: string[] = [];
    expect(await loadFingerprintSecret(stateDir, { create: true, warn: (m) => warnings.push(m) })).toEqual(made);
    expect(warnings).toEqual([`${join(stateDir, SECRET_FILE)} was readable by others (mode 644); set to 600`]);
    expect((await stat(join(stateDir, SECRET_FILE))).mode & 0o777).toBe(0o600);
  });
});
