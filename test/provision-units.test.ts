/** The provisioning tool's pure parts: inventory forms, the wrong-key budget, the journal's torn last line. */

import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { parseInventory } from "../src/provision/inventory.ts";
import { Journal, JournalError, readJournal, type Intent } from "../src/provision/journal.ts";
import { RefusalBudget } from "../src/provision/pacing.ts";
import { cleanup, tempDir } from "./helpers.ts";
import { inventoryRefusal as refusal } from "./provision-harness.ts";

afterEach(cleanup);

describe("inventory", () => {
  it("reads the full form, the bare-host shortcut, a shared-pair batch and plain text", () => {
    const pair = { rd: "r1", wr: "w1" };
    expect(parseInventory(JSON.stringify([{ host: "192.168.15.100", apikeys: pair }, "192.168.15.101:8080", "[fd00::5]:81"]))).toEqual([
      { host: "192.168.15.100", scheme: "http", hostname: "192.168.15.100", port: 80, apikeys: pair },
      { host: "192.168.15.101:8080", scheme: "http", hostname: "192.168.15.101", port: 8080, apikeys: { rd: "rdKey2", wr: "wrKey2" } },
      { host: "[fd00::5]:81", scheme: "http", hostname: "fd00::5", port: 81, apikeys: { rd: "rdKey2", wr: "wrKey2" } },
    ]);
    expect(parseInventory(JSON.stringify({ apikeys: pair, hosts: ["gw1.local"] }))).toEqual([{ host: "gw1.local", scheme: "http", hostname: "gw1.local", port: 80, apikeys: pair }]);
    expect(parseInventory("# batch 7\n10.0.0.1\n\n10.0.0.2:8080  # spare\n").map((d) => d.host)).toEqual(["10.0.0.1", "10.0.0.2:8080"]);
  });

  it("refuses what it would have to guess about, without echoing keys", () => {
    expect(refusal("[]")).toBe("lists no device");
    expect(refusal('["http://10.0.0.1/"]')).toBe("entry 0: the host is not HOST[:PORT] or https://HOST[:PORT] (no path)");
    expect(refusal('["10.0.0.1:70000"]')).toBe("entry 0: the host is not HOST[:PORT] or https://HOST[:PORT] (no path)");
    expect(refusal('["10.0.0.1", "10.0.0.1:80"]')).toBe('entry 1: "10.0.0.1:80" is the same device as entry 0');
    expect(refusal('[{"host": "10.0.0.1", "apikeys": {"rd": "has space secret", "wr": "x"}}]')).not.toContain("secret");
    expect(refusal('[{"host": "10.0.0.1", "key": "x"}]')).toBe('entry 0: has a member other than "host" and "apikeys"');
    // Keys typed where a host or a member name goes are not quoted back.
    expect(refusal("10.0.0.1\n10.0.0.2 SECRETrd SECRETwr\n")).toBe("line 2: the host is not HOST[:PORT] or https://HOST[:PORT] (no path)");
    expect(refusal('[{"host": "10.0.0.1", "SECRETrd": "SECRETwr"}]')).toBe('entry 0: has a member other than "host" and "apikeys"');
    expect(refusal('{"hosts": ["10.0.0.1"], "SECRETrd": "SECRETwr"}')).toBe('has a member other than "hosts" and "apikeys"');
  });

  it("tells where an inventory stops being JSON, never the text around it (a key)", () => {
    const pair = '{"host": "10.0.0.1", "apikeys": {"rd": "SECRETrd", "wr": "SECRETwr"}}';
    expect(refusal(`\n\n[\n  ${pair},\n]\n`)).toBe("not valid JSON (line 5, column 1)"); // trailing comma; leading blank lines count
    expect(refusal(`[${pair.replace('"SECRETwr"', "SECRETwr")}]`)).toBe("not valid JSON (line 1, column 59)");
    expect(refusal(`{"hosts": ["10.0.0.1"], "apikeys": {"rd": "SECRETrd", "wr": "SECRETwr`)).toBe("not valid JSON (line 1, column 70)");
  });
});

describe("the wrong-key budget", () => {
  it("allows maxFailures - 1 refusals in any stretch of the window, then waits for the oldest to age out", () => {
    let now = 0;
    const budget = new RefusalBudget({ maxFailures: 4, windowMs: 1_000 }, () => now);
    for (let i = 0; i < 3; i++) {
      expect(budget.delayMs()).toBe(0);
      budget.note();
      now += 100;
    }
    // Refusals at 0, 100, 200; now 300: the next may leave once the one at 0 is 1 s + margin old.
    expect(budget.delayMs()).toBe(0 + 1_000 + 250 - 300 + 1);
    now = 1_251;
    expect(budget.delayMs()).toBe(0);
  });
});

describe("the journal", () => {
  const intent = (endpoint: string): Intent => ({ host: "10.0.0.1", endpoint, oldRd: "a", oldWr: "b", newRd: "c", newWr: "d" });

  it("ignores a last line torn by a crash and cuts it before appending (mode 0600)", async () => {
    const path = join(await tempDir(), "secrets.json.journal");
    await writeFile(path, JSON.stringify(intent("data")) + '\n{"host":"10.0.0.1","endp');
    const contents = await readJournal(path);
    expect(contents.intents).toEqual([intent("data")]);
    const journal = new Journal(path, contents);
    await journal.append(intent("apikeys"));
    await journal.close();
    expect(await readFile(path, "utf8")).toBe(JSON.stringify(intent("data")) + "\n" + JSON.stringify(intent("apikeys")) + "\n");
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await readJournal(path)).intents).toEqual([intent("data"), intent("apikeys")]);
  });

  it("refuses a damaged line that is not the last", async () => {
    const path = join(await tempDir(), "secrets.json.journal");
    await writeFile(path, "garbage\n" + JSON.stringify(intent("data")) + "\n");
    await expect(readJournal(path)).rejects.toThrow(JournalError);
  });
});
