/**
 * Discovery on a real (virtual) LAN: the built server in one network namespace, an independent
 * mDNS implementation (the multicast-dns package, test/mdns-peer.mjs) and the provisioning tool in
 * another, joined by a veth pair (test/mdns-lan.ts). Nothing reaches the host's networks.
 *
 * Needs root and iproute2; without them the tests say so and are skipped, except under CI=true,
 * where they fail (.ci/run installs iproute2 and runs as root). MDNS_DEBUG=FILE writes what the peer
 * heard and the servers logged to FILE.
 */

import type { ChildProcessWithoutNullStreams } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseInventory } from "../src/provision/inventory.ts";
import { cleanup, copyConfig, CONFIG_DIR, IN_CI, lacks, tempDir } from "./helpers.ts";
import { canMakeNamespaces, createLan, DEVICE_IP, Lines, PEER_IP, PEER_SCRIPT, PROVISION_BUNDLE, SERVER_BUNDLE, type Lan } from "./mdns-lan.ts";

const AVAILABLE = canMakeNamespaces();
const HOST = "enetmini1-abcdef.local";
const INSTANCE = "enetmini1-abcdef._http._tcp.local";

interface PeerRecord {
  name: string;
  type: string;
  ttl: number;
  flush: boolean;
  data: unknown;
}
interface PeerLine {
  event: string;
  from?: { address: string; port: number };
  id?: number;
  questions?: Array<{ name: string; type: string }>;
  answers?: PeerRecord[];
  additionals?: PeerRecord[];
  authorities?: PeerRecord[];
  time?: number;
}
interface LogLine {
  msg?: string;
  host?: string;
  was?: string;
}

interface Device {
  child: ChildProcessWithoutNullStreams;
  log: Lines<LogLine>;
  host: string;
  exited: Promise<number | null>;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

if (!AVAILABLE) {
  process.stderr.write(`discovery-lan: multicast cannot be had here (needs root and iproute2's "ip netns"); ${IN_CI ? "CI requires it: failing" : "skipped"}\n`);
}

describe.skipIf(lacks(AVAILABLE))("mDNS and DNS-SD on a LAN of two network namespaces", () => {
  let lan: Lan;
  let peer: ChildProcessWithoutNullStreams;
  let heard: Lines<PeerLine>;
  const devices: Device[] = [];

  const tell = (command: object): void => {
    peer.stdin.write(JSON.stringify(command) + "\n");
  };
  /** The next response (after now) that passes `test`. */
  const nextResponse = (test: (line: PeerLine) => boolean, ms = 4000): Promise<PeerLine> => heard.waitFor((l) => l.event === "response" && test(l), ms, heard.all.length);
  /**
   * Asks until a response passes `test`, as a real querier does (RFC 6762 §5.2: again after a
   * second, and so on): a record multicast less than a second ago is not multicast again.
   */
  const ask = async (questions: object[], test: (line: PeerLine) => boolean, tries = 6): Promise<PeerLine> => {
    for (let i = 1; ; i++) {
      const reply = nextResponse(test, 1200);
      tell({ op: "query", questions });
      try {
        return await reply;
      } catch (error) {
        if (i >= tries) throw error;
      }
    }
  };
  const has = (records: PeerRecord[] | undefined, name: string, type: string): PeerRecord | undefined => records?.find((r) => r.name.toLowerCase() === name.toLowerCase() && r.type === type);

  async function startDevice(port: number, configDir = CONFIG_DIR): Promise<Device> {
    const state = await tempDir("apikeyd-mdns-");
    const child = lan.spawnIn(lan.device, process.execPath, [SERVER_BUNDLE, "--port", String(port), "--state-dir", state, "--config-dir", configDir, "--log-format", "json"]);
    const log = new Lines<LogLine>(child.stderr);
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const advertising = await log.waitFor((l) => l.msg === "mDNS: advertising", 8000);
    const device = { child, log, host: advertising.host as string, exited };
    devices.push(device);
    return device;
  }

  beforeAll(async () => {
    if (!AVAILABLE) throw new Error("multicast cannot be had here: these tests need root and iproute2 (ip netns) to make a LAN of network namespaces");
    lan = createLan();
    peer = lan.spawnIn(lan.peer, process.execPath, [PEER_SCRIPT, PEER_IP]);
    heard = new Lines<PeerLine>(peer.stdout);
    await heard.waitFor((l) => l.event === "ready");
  });

  afterAll(async () => {
    if (process.env["MDNS_DEBUG"] !== undefined) await writeFile(process.env["MDNS_DEBUG"], [...heard.text, "----", ...devices.flatMap((d) => d.log.text)].join("\n"));
    for (const d of devices) d.child.kill("SIGKILL");
    peer?.kill("SIGKILL");
    await Promise.all(devices.map((d) => d.exited));
    lan?.remove();
    await cleanup();
  });

  it("probes three times, then announces twice, a second apart (heard by multicast-dns)", async () => {
    const from = heard.all.length;
    const device = await startDevice(8080);
    expect(device.host).toBe(HOST);
    const announcement = (l: PeerLine): boolean => l.event === "response" && has(l.answers, INSTANCE, "SRV") !== undefined;
    await heard.waitFor(announcement, 4000, heard.all.indexOf(await heard.waitFor(announcement, 4000, from)) + 1);
    await sleep(300); // nothing more follows
    const lines = heard.all.slice(from);
    const probes = lines.filter((l) => l.event === "query" && l.from?.address === DEVICE_IP && (l.authorities ?? []).some((a) => a.name === HOST));
    expect(probes.length).toBe(3);
    const announcements = lines.filter((l) => l.event === "response" && has(l.answers, INSTANCE, "SRV") !== undefined);
    expect(announcements.length).toBe(2);
    const gap = (announcements[1]?.time ?? 0) - (announcements[0]?.time ?? 0);
    expect(gap).toBeGreaterThanOrEqual(900);
    expect(announcements[0]?.from).toMatchObject({ address: DEVICE_IP, port: 5353 });
  });

  it("resolves the host name to the addresses it serves on (A and AAAA)", async () => {
    const reply = ask([{ name: HOST, type: "A" }], (l) => has(l.answers, HOST, "A") !== undefined);
    const line = await reply;
    expect(has(line.answers, HOST, "A")?.data).toBe(DEVICE_IP);
    expect(has(line.answers, HOST, "A")?.flush).toBe(true);
    const six = ask([{ name: HOST, type: "AAAA" }], (l) => has(l.answers, HOST, "AAAA") !== undefined);
    expect((await six).answers?.filter((a) => a.type === "AAAA").map((a) => a.data)).toContain("fd77::1");
  });

  it("is found by browsing _http._tcp, with its SRV and TXT (and by the service enumeration)", async () => {
    const reply = ask([{ name: "_http._tcp.local", type: "PTR" }], (l) => has(l.answers, "_http._tcp.local", "PTR") !== undefined);
    const line = await reply;
    expect(line.answers?.filter((a) => a.type === "PTR").map((a) => a.data)).toContain(INSTANCE);
    const srv = has(line.additionals, INSTANCE, "SRV");
    expect(srv?.data).toEqual({ priority: 0, weight: 0, port: 8080, target: HOST });
    const txt = has(line.additionals, INSTANCE, "TXT")?.data as string[];
    expect(txt).toEqual(expect.arrayContaining(["path=/api/v1/device", "board=mkc1601", "part=101648", "https=0", "api=v1"]));
    expect(txt.join(" ")).not.toMatch(/key|pass|user/i);
    expect(has(line.additionals, HOST, "A")?.data).toBe(DEVICE_IP);

    const services = ask([{ name: "_services._dns-sd._udp.local", type: "PTR" }], (l) => has(l.answers, "_services._dns-sd._udp.local", "PTR") !== undefined);
    expect(has((await services).answers, "_services._dns-sd._udp.local", "PTR")?.data).toBe("_http._tcp.local");
  });

  it("answers a QU question, and a legacy unicast query to its source port with the query's ID and TTL at most 10 s", async () => {
    const reply = ask([{ name: INSTANCE, type: "TXT", unicastResponse: true }], (l) => has(l.answers, INSTANCE, "TXT") !== undefined);
    expect((await reply).from).toMatchObject({ address: DEVICE_IP, port: 5353 });

    const legacy = heard.waitFor((l) => l.event === "legacy-answer", 4000, heard.all.length);
    tell({ op: "legacy", id: 4660, questions: [{ name: HOST, type: "A" }] });
    const answer = await legacy;
    expect(answer.id).toBe(4660);
    expect(answer.from).toMatchObject({ address: DEVICE_IP, port: 5353 });
    expect(answer.questions).toEqual([{ name: HOST, type: "A", class: "IN" }]);
    expect(answer.answers?.map((a) => [a.type, a.data, a.ttl <= 10, a.flush])).toEqual([["A", DEVICE_IP, true, false]]);
  });

  it("known-answer suppression: no answer to an asker that holds the record already", async () => {
    await sleep(1100);
    const from = heard.all.length;
    tell({ op: "query", questions: [{ name: "_http._tcp.local", type: "PTR" }], answers: [{ name: "_http._tcp.local", type: "PTR", ttl: 4500, data: INSTANCE }] });
    await sleep(1000);
    expect(heard.all.slice(from).filter((l) => l.event === "response" && has(l.answers, "_http._tcp.local", "PTR"))).toEqual([]);
    const reply = ask([{ name: "_http._tcp.local", type: "PTR" }], (l) => has(l.answers, "_http._tcp.local", "PTR") !== undefined, 1); // at once: nothing was multicast in between
    await reply;
  });

  it("drops malformed packets (a name pointer loop, junk, a huge count) and goes on answering", async () => {
    for (const hex of ["0000000000010000000000" + "00c00c00010001", "deadbeef", "0000 0000 ffff ffff ffff ffff 00".replace(/ /g, ""), "00".repeat(1400)]) tell({ op: "raw", hex });
    await sleep(1100);
    expect(devices[0]?.child.exitCode).toBeNull();
    const reply = ask([{ name: HOST, type: "A" }], (l) => has(l.answers, HOST, "A") !== undefined);
    await reply;
  });

  it("renames to -2 when another responder holds the name (multicast-dns claiming it)", async () => {
    const config = await copyConfig();
    const deviceFile = join(config, "device.json");
    await writeFile(deviceFile, (await readFile(deviceFile, "utf8")).replace("004082ABCDEF", "004082123456"));
    tell({ op: "claim", name: "enetmini1-123456.local", address: "10.77.0.99" });
    const device = await startDevice(8081, config);
    expect(device.host).toBe("enetmini1-123456-2.local");
    expect(device.log.all.some((l) => l.msg?.includes("renamed") === true && l.was === "enetmini1-123456.local")).toBe(true);
    const reply = ask([{ name: "enetmini1-123456-2.local", type: "A" }], (l) => has(l.answers, "enetmini1-123456-2.local", "A") !== undefined);
    expect(has((await reply).answers, "enetmini1-123456-2.local", "A")?.data).toBe(DEVICE_IP);
  });

  it("a second device of the same name and MAC renames to -2 (one responder against another)", async () => {
    const device = await startDevice(8082);
    expect(device.host).toBe("enetmini1-abcdef-2.local");
    const reply = ask([{ name: "enetmini1-abcdef-2._http._tcp.local", type: "SRV" }], (l) => has(l.answers, "enetmini1-abcdef-2._http._tcp.local", "SRV") !== undefined);
    expect(has((await reply).answers, "enetmini1-abcdef-2._http._tcp.local", "SRV")?.data).toMatchObject({ port: 8082, target: "enetmini1-abcdef-2.local" });
  });

  it("provision --discover finds the local devices, confirms them, and prints an inventory --inventory reads", async () => {
    const tool = lan.spawnIn(lan.peer, process.execPath, [PROVISION_BUNDLE, "--discover", "--timeout", "3"]);
    let stdout = "";
    let stderr = "";
    tool.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    tool.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => tool.once("exit", resolve));
    expect({ code, stderr }).toMatchObject({ code: 0 });
    expect(stderr).toContain("3 devices found");
    const inventory = parseInventory(stdout);
    expect(inventory.map((d) => d.host).sort()).toEqual([`${DEVICE_IP}:8080`, `${DEVICE_IP}:8081`, `${DEVICE_IP}:8082`]);
    expect(stdout).toContain("# enetmini1-abcdef-2, enetmini1-abcdef-2.local, MAC 004082ABCDEF, mkc1601");
    expect(stdout).not.toMatch(/rdKey|wrKey|apikeys"/);

    const dir = await tempDir();
    const out = join(dir, "found.txt");
    const write = (): Promise<number | null> => {
      const again = lan.spawnIn(lan.peer, process.execPath, [PROVISION_BUNDLE, "--discover", "--timeout", "2", "--out", out]);
      return new Promise((resolve) => again.once("exit", resolve));
    };
    expect(await write()).toBe(0);
    expect(parseInventory(await readFile(out, "utf8"))).toHaveLength(3);
    expect(await write()).toBe(2); // never over an existing file
  }, 30_000);

  it("when properties.name changes: goodbye to the old name, the new one probed and announced", async () => {
    const bye = nextResponse((l) => (l.answers ?? []).some((a) => a.name === INSTANCE && a.type === "SRV" && a.ttl === 0), 6000);
    const hello = nextResponse((l) => has(l.answers, "pump-house-abcdef._http._tcp.local", "SRV") !== undefined, 6000);
    const put = lan.spawnIn(lan.device, process.execPath, [
      "-e",
      `fetch("http://${DEVICE_IP}:8080/api/v1/properties/name", { method: "PUT", headers: { ApiRdKey: "rdKey1", ApiWrKey: "wrKey1", "Content-Type": "application/x-www-form-urlencoded" }, body: "name=Pump%20House" }).then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(2))`,
    ]);
    expect(await new Promise((resolve) => put.once("exit", resolve))).toBe(0);
    await bye;
    const line = await hello;
    expect(has(line.answers, "pump-house-abcdef.local", "A")?.data).toBe(DEVICE_IP);
  }, 20_000);

  it("says goodbye (TTL 0) at a clean stop, and exits 0", async () => {
    const device = devices[2] as Device;
    const bye = nextResponse((l) => (l.answers ?? []).some((a) => a.name === "enetmini1-abcdef-2._http._tcp.local" && a.type === "SRV" && a.ttl === 0));
    device.child.kill("SIGTERM");
    const line = await bye;
    expect(line.answers?.every((a) => a.ttl === 0)).toBe(true);
    expect(await device.exited).toBe(0);
  });
});
