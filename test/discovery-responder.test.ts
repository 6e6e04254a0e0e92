/**
 * The responder's rules (RFC 6762/6763) with a recording transport and fake timers: what it sends,
 * when, and to whom. The same responder on real sockets, against an independent implementation,
 * is test/discovery-lan.test.ts.
 */

import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { CLASS_IN, decodePacket, encodePacket, TYPE, type Packet, type Question, type ResourceRecord } from "../src/discovery/dns-packet.ts";
import { LEGACY_TTL, Responder, type Link, type Transport } from "../src/discovery/responder.ts";
import type { Identity } from "../src/discovery/names.ts";
import { linksFor, mdnsWanted } from "../src/discovery/service.ts";
import { parseOptions } from "../src/cli/options.ts";

const LINK: Link = { name: "eth0", v4: ["192.168.15.100"], v6: ["fd00::100"], nets: [{ address: "192.168.15.100", netmask: "255.255.255.0" }, { address: "fd00::100", netmask: "ffff:ffff:ffff:ffff::" }] };
const IDENTITY: Identity = { name: "eNetMini1", mac: "004082ABCDEF", board: "mkc1601", partNumber: "101648" };
const HOST = "enetmini1-abcdef.local";
const INSTANCE = "enetmini1-abcdef._http._tcp.local";
const PEER = { address: "192.168.15.7", port: 5353 };

interface Sent {
  readonly to: "multicast" | string;
  readonly family?: 4 | 6;
  readonly packet: Packet;
  readonly at: number;
}

function setup(overrides: Partial<ConstructorParameters<typeof Responder>[0]> = {}): { responder: Responder; sent: Sent[]; start: number } {
  const sent: Sent[] = [];
  const start = Date.now();
  const transport: Transport = {
    multicast: async (_link, family, packet) => {
      sent.push({ to: "multicast", family, packet: decodePacket(packet), at: Date.now() - start });
    },
    unicast: async (address, port, packet) => {
      sent.push({ to: `${address}:${port}`, packet: decodePacket(packet), at: Date.now() - start });
    },
  };
  const responder = new Responder({ identity: IDENTITY, secure: false, port: 8080, links: [LINK], transport, random: () => 0.5, ...overrides });
  return { responder, sent, start };
}

const v4 = (sent: Sent[]): Sent[] => sent.filter((s) => s.family !== 6);
const query = (questions: Array<Partial<Question> & { name: string; type: number }>, extra: Partial<Packet> = {}): Buffer =>
  encodePacket({ questions: questions.map((q) => ({ class: CLASS_IN, unicastResponse: false, ...q })), ...extra });
const rr = (name: string, data: ResourceRecord["data"], ttl = 120): ResourceRecord => ({
  name,
  type: data.kind === "raw" ? 0 : TYPE[data.kind],
  class: CLASS_IN,
  cacheFlush: true,
  ttl,
  data,
});

/** Runs the probing and both announcements, and forgets what was sent. */
async function announced(s: ReturnType<typeof setup>): Promise<void> {
  s.responder.start();
  await vi.advanceTimersByTimeAsync(3000);
  expect(s.responder.state).toBe("announced");
  s.sent.length = 0;
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("probing and announcing", () => {
  it("probes three times 250 ms apart (the first QU), then announces twice a second apart", async () => {
    const s = setup();
    s.responder.start();
    await vi.advanceTimersByTimeAsync(3000);
    const sent = v4(s.sent);
    const probes = sent.filter((x) => !x.packet.response);
    expect(probes.map((p) => p.at)).toEqual([125, 375, 625]);
    expect(probes.map((p) => p.packet.questions.map((q) => [q.name, q.type, q.unicastResponse]))).toEqual([
      [[HOST, TYPE.ANY, true], [INSTANCE, TYPE.ANY, true]],
      [[HOST, TYPE.ANY, false], [INSTANCE, TYPE.ANY, false]],
      [[HOST, TYPE.ANY, false], [INSTANCE, TYPE.ANY, false]],
    ]);
    expect(probes[0]?.packet.authorities.map((a) => a.type).sort()).toEqual([TYPE.A, TYPE.TXT, TYPE.AAAA, TYPE.SRV].sort());
    const announcements = sent.filter((x) => x.packet.response);
    expect(announcements.map((a) => a.at)).toEqual([875, 1875]);
    // The same announcement goes out on IPv6 too.
    expect(s.sent.filter((x) => x.family === 6 && x.packet.response)).toHaveLength(2);
  });

  it("announces the host's addresses, the SRV, the TXT and the PTRs; nothing about keys or accounts", async () => {
    const s = setup();
    s.responder.start();
    await vi.advanceTimersByTimeAsync(1000);
    const answers = v4(s.sent).find((x) => x.packet.response)?.packet.answers ?? [];
    const show = answers.map((a) => [a.name, a.cacheFlush, a.ttl, a.data.kind === "TXT" ? a.data.strings.map(String) : a.data]);
    expect(show).toEqual([
      [HOST, true, 120, { kind: "A", address: "192.168.15.100" }],
      [HOST, true, 120, { kind: "AAAA", address: "fd00::100" }],
      [INSTANCE, true, 120, { kind: "SRV", priority: 0, weight: 0, port: 8080, target: HOST }],
      [INSTANCE, true, 4500, ["txtvers=1", "path=/api/v1/device", "api=v1", "https=0", "board=mkc1601", "part=101648"]],
      ["_http._tcp.local", false, 4500, { kind: "PTR", target: INSTANCE }],
      ["_services._dns-sd._udp.local", false, 4500, { kind: "PTR", target: "_http._tcp.local" }],
    ]);
    expect(JSON.stringify(show)).not.toMatch(/key|pass|user|rdKey|wrKey/i);
  });

  it("advertises _https._tcp with https=1 when serving TLS", async () => {
    const s = setup({ secure: true, port: 8443 });
    s.responder.start();
    await vi.advanceTimersByTimeAsync(1000);
    const answers = v4(s.sent).find((x) => x.packet.response)?.packet.answers ?? [];
    expect(answers.find((a) => a.data.kind === "PTR")?.name).toBe("_https._tcp.local");
    const txt = answers.find((a) => a.data.kind === "TXT")?.data;
    expect(txt?.kind === "TXT" && txt.strings.map(String)).toContain("https=1");
  });

  it("renames to -2, then -3, when another host answers for the name while it probes", async () => {
    const s = setup();
    s.responder.start();
    await vi.advanceTimersByTimeAsync(200);
    s.responder.receive(encodePacket({ response: true, answers: [rr(HOST, { kind: "A", address: "192.168.15.9" })] }), PEER);
    expect(s.responder.hostName).toBe("enetmini1-abcdef-2.local");
    await vi.advanceTimersByTimeAsync(300);
    s.responder.receive(encodePacket({ response: true, answers: [rr("enetmini1-abcdef-2._http._tcp.local", { kind: "SRV", priority: 0, weight: 0, port: 80, target: "x.local" })] }), PEER);
    expect(s.responder.instanceName).toBe("enetmini1-abcdef-3._http._tcp.local");
    await vi.advanceTimersByTimeAsync(3000);
    expect(s.responder.state).toBe("announced");
    const last = v4(s.sent).filter((x) => x.packet.response).at(-1);
    expect(last?.packet.answers[0]?.name).toBe("enetmini1-abcdef-3.local");
  });

  it("does not take its own probes and announcements, looped back, for a conflict", async () => {
    const s = setup();
    s.responder.start();
    await vi.advanceTimersByTimeAsync(3000);
    for (const x of v4(s.sent)) s.responder.receive(encodePacket(x.packet), { address: "192.168.15.100", port: 5353 });
    await vi.advanceTimersByTimeAsync(3000);
    expect(s.responder.hostName).toBe(HOST);
  });

  it("simultaneous probes: the lexicographically later data wins, the other waits a second and probes again", async () => {
    const s = setup();
    s.responder.start();
    await vi.advanceTimersByTimeAsync(130);
    // A rival probing the same names with an earlier address: we win and go on.
    const rival = (address: string): Buffer =>
      query([{ name: HOST, type: TYPE.ANY }], { authorities: [rr(HOST, { kind: "A", address }), rr(HOST, { kind: "AAAA", address: "fd00::100" })] });
    s.responder.receive(rival("192.168.15.1"), PEER);
    await vi.advanceTimersByTimeAsync(1000);
    expect(s.responder.state).toBe("announced");

    const t = setup();
    t.responder.start();
    await vi.advanceTimersByTimeAsync(130);
    t.responder.receive(rival("192.168.15.200"), PEER);
    await vi.advanceTimersByTimeAsync(900);
    expect(t.responder.state).toBe("probing");
    expect(v4(t.sent).filter((x) => !x.packet.response)).toHaveLength(1); // the round was dropped
    await vi.advanceTimersByTimeAsync(2000);
    expect(t.responder.state).toBe("announced");
    expect(t.responder.hostName).toBe(HOST);
  });

  it("after announcing, another host's different record for its name makes it probe again (and rename if that host defends)", async () => {
    const s = setup();
    await announced(s);
    s.responder.receive(encodePacket({ response: true, answers: [rr(INSTANCE, { kind: "SRV", priority: 0, weight: 0, port: 9999, target: "other.local" })] }), PEER);
    expect(s.responder.state).toBe("probing");
    await vi.advanceTimersByTimeAsync(200);
    s.responder.receive(encodePacket({ response: true, answers: [rr(INSTANCE, { kind: "SRV", priority: 0, weight: 0, port: 9999, target: "other.local" })] }), PEER);
    expect(s.responder.instanceName).toBe("enetmini1-abcdef-2._http._tcp.local");
  });
});

describe("answering", () => {
  it("answers a PTR browse by multicast after 20-120 ms, with SRV, TXT and addresses as additional records", async () => {
    const s = setup();
    await announced(s);
    await vi.advanceTimersByTimeAsync(1000);
    s.responder.receive(query([{ name: "_http._tcp.local", type: TYPE.PTR }]), PEER);
    expect(s.sent).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(120);
    const reply = v4(s.sent)[0];
    expect(reply?.to).toBe("multicast");
    expect(reply?.packet.answers.map((a) => a.type)).toEqual([TYPE.PTR]);
    expect(reply?.packet.additionals.map((a) => a.type)).toEqual([TYPE.SRV, TYPE.TXT, TYPE.A, TYPE.AAAA]);
  });

  it("answers a question for its address at once, and is case-insensitive", async () => {
    const s = setup();
    await announced(s);
    await vi.advanceTimersByTimeAsync(1000);
    s.responder.receive(query([{ name: "ENetMini1-ABCDEF.local", type: TYPE.A }]), PEER);
    await vi.advanceTimersByTimeAsync(0);
    expect(v4(s.sent)[0]?.packet.answers.map((a) => a.data)).toEqual([{ kind: "A", address: "192.168.15.100" }]);
  });

  it("multicasts a record at most once a second on an interface (RFC 6762 §6)", async () => {
    const s = setup();
    await announced(s);
    await vi.advanceTimersByTimeAsync(1000);
    const q = query([{ name: HOST, type: TYPE.A }]);
    s.responder.receive(q, PEER);
    await vi.advanceTimersByTimeAsync(300);
    s.responder.receive(q, PEER);
    await vi.advanceTimersByTimeAsync(300);
    s.responder.receive(q, PEER);
    expect(v4(s.sent)).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(500);
    s.responder.receive(q, PEER);
    expect(v4(s.sent)).toHaveLength(2);
  });

  it("answers a record it announced less than a second ago only once the second is over (not at all now)", async () => {
    const s = setup();
    s.responder.start();
    await vi.advanceTimersByTimeAsync(1900); // the second announcement just went out
    s.sent.length = 0;
    s.responder.receive(query([{ name: HOST, type: TYPE.A }]), PEER);
    await vi.advanceTimersByTimeAsync(10);
    expect(s.sent).toHaveLength(0);
  });

  it("known-answer suppression: no answer when the asker holds the record with at least half its TTL", async () => {
    const s = setup();
    await announced(s);
    await vi.advanceTimersByTimeAsync(1000);
    const ptr = (ttl: number): ResourceRecord => ({ ...rr("_http._tcp.local", { kind: "PTR", target: INSTANCE }, ttl), cacheFlush: false });
    s.responder.receive(query([{ name: "_http._tcp.local", type: TYPE.PTR }], { answers: [ptr(4000)] }), PEER);
    await vi.advanceTimersByTimeAsync(200);
    expect(s.sent).toHaveLength(0);
    s.responder.receive(query([{ name: "_http._tcp.local", type: TYPE.PTR }], { answers: [ptr(2000)] }), PEER);
    await vi.advanceTimersByTimeAsync(200);
    expect(v4(s.sent)).toHaveLength(1);
  });

  it("a QU question is answered by unicast to the asker when the record was multicast within a quarter of its TTL, else by multicast", async () => {
    const s = setup();
    await announced(s);
    await vi.advanceTimersByTimeAsync(1000);
    s.responder.receive(query([{ name: HOST, type: TYPE.A, unicastResponse: true }]), PEER);
    await vi.advanceTimersByTimeAsync(0);
    expect(s.sent.map((x) => x.to)).toEqual(["192.168.15.7:5353"]);
    s.sent.length = 0;
    await vi.advanceTimersByTimeAsync(31_000); // past 120 s / 4
    s.responder.receive(query([{ name: HOST, type: TYPE.A, unicastResponse: true }]), PEER);
    await vi.advanceTimersByTimeAsync(0);
    expect(v4(s.sent).map((x) => x.to)).toEqual(["multicast"]);
  });

  it("a legacy unicast query (not from port 5353) gets a unicast answer with its ID and question, TTL at most 10 s, no cache-flush bit", async () => {
    const s = setup();
    await announced(s);
    const legacy = { address: "192.168.15.7", port: 40000 };
    const q = encodePacket({ id: 0xbeef, questions: [{ name: INSTANCE, type: TYPE.SRV, class: CLASS_IN, unicastResponse: false }] });
    s.responder.receive(q, legacy);
    s.responder.receive(q, legacy); // not rate-limited: each asker gets its answer
    await vi.advanceTimersByTimeAsync(0);
    expect(s.sent).toHaveLength(2);
    const reply = s.sent[0];
    expect(reply?.to).toBe("192.168.15.7:40000");
    expect(reply?.packet.id).toBe(0xbeef);
    expect(reply?.packet.questions).toEqual([{ name: INSTANCE, type: TYPE.SRV, class: CLASS_IN, unicastResponse: false }]);
    for (const a of [...(reply?.packet.answers ?? []), ...(reply?.packet.additionals ?? [])]) {
      expect(a.ttl).toBeLessThanOrEqual(LEGACY_TTL);
      expect(a.cacheFlush).toBe(false);
    }
    expect(reply?.packet.answers.map((a) => a.type)).toEqual([TYPE.SRV]);
    expect(reply?.packet.additionals.map((a) => a.type)).toEqual([TYPE.A, TYPE.AAAA]);
  });

  it("defends its name against a probe at once, within 250 ms of the last multicast", async () => {
    const s = setup();
    await announced(s);
    await vi.advanceTimersByTimeAsync(300);
    s.responder.receive(query([{ name: HOST, type: TYPE.ANY }], { authorities: [rr(HOST, { kind: "A", address: "192.168.15.9" })] }), PEER);
    await vi.advanceTimersByTimeAsync(0);
    expect(v4(s.sent)[0]?.packet.answers.map((a) => a.type)).toEqual([TYPE.A, TYPE.AAAA]);
  });

  it("ignores queries from outside the interface's subnets, other opcodes, and what it does not own", async () => {
    const s = setup();
    await announced(s);
    await vi.advanceTimersByTimeAsync(1000);
    s.responder.receive(query([{ name: HOST, type: TYPE.A }]), { address: "10.9.9.9", port: 5353 });
    s.responder.receive(encodePacket({ opcode: 2, questions: [{ name: HOST, type: TYPE.A, class: CLASS_IN, unicastResponse: false }] }), PEER);
    s.responder.receive(query([{ name: "other.local", type: TYPE.A }]), PEER);
    s.responder.receive(query([{ name: HOST, type: TYPE.SRV }]), PEER);
    await vi.advanceTimersByTimeAsync(500);
    expect(s.sent).toHaveLength(0);
  });

  it("drops malformed packets without a word and goes on answering", async () => {
    const s = setup();
    await announced(s);
    await vi.advanceTimersByTimeAsync(1000);
    for (const junk of [Buffer.alloc(0), Buffer.from("GET / HTTP/1.1\r\n\r\n"), Buffer.from("0000000000010000000000000c000100", "hex"), Buffer.alloc(9500)]) {
      expect(() => s.responder.receive(junk, PEER)).not.toThrow();
    }
    s.responder.receive(query([{ name: HOST, type: TYPE.A }]), PEER);
    await vi.advanceTimersByTimeAsync(0);
    expect(v4(s.sent)).toHaveLength(1);
  });
});

describe("changes and the goodbye", () => {
  it("says goodbye (TTL 0, every record) at stop, and nothing after", async () => {
    const s = setup();
    await announced(s);
    await s.responder.stop();
    const bye = v4(s.sent);
    expect(bye).toHaveLength(1);
    expect(bye[0]?.packet.answers.length).toBe(6);
    expect(bye[0]?.packet.answers.every((a) => a.ttl === 0)).toBe(true);
    s.responder.receive(query([{ name: HOST, type: TYPE.A }]), PEER);
    await vi.advanceTimersByTimeAsync(2000);
    expect(v4(s.sent)).toHaveLength(1);
  });

  it("a stop while probing sends nothing (nothing was claimed yet)", async () => {
    const s = setup();
    s.responder.start();
    await vi.advanceTimersByTimeAsync(300);
    s.sent.length = 0;
    await s.responder.stop();
    await vi.advanceTimersByTimeAsync(3000);
    expect(s.sent).toHaveLength(0);
  });

  it("a new properties.name: goodbye to the old names, then the new one probed and announced", async () => {
    const s = setup();
    await announced(s);
    await s.responder.update({ identity: { ...IDENTITY, name: "Pump House" } });
    expect(v4(s.sent)[0]?.packet.answers.every((a) => a.ttl === 0 && (a.name.startsWith("enetmini1") || a.data.kind === "PTR"))).toBe(true);
    await vi.advanceTimersByTimeAsync(2500);
    const after = v4(s.sent).slice(1);
    expect(after.filter((x) => !x.packet.response)).toHaveLength(3);
    expect(after.find((x) => x.packet.response)?.packet.answers[0]?.name).toBe("pump-house-abcdef.local");
    expect(s.responder.hostName).toBe("pump-house-abcdef.local");
  });

  it("the same name again changes nothing", async () => {
    const s = setup();
    await announced(s);
    await s.responder.update({ identity: { ...IDENTITY } });
    await vi.advanceTimersByTimeAsync(3000);
    expect(s.sent).toHaveLength(0);
  });

  it("a new address: the old one withdrawn, the names probed and announced again", async () => {
    const s = setup();
    await announced(s);
    await s.responder.update({ links: [{ ...LINK, v4: ["192.168.15.101"] }] });
    const bye = v4(s.sent)[0]?.packet.answers ?? [];
    expect(bye.map((a) => [a.data, a.ttl])).toEqual([[{ kind: "A", address: "192.168.15.100" }, 0]]);
    await vi.advanceTimersByTimeAsync(3000);
    const announcement = v4(s.sent).filter((x) => x.packet.response).at(-1);
    expect(announcement?.packet.answers[0]?.data).toEqual({ kind: "A", address: "192.168.15.101" });
  });
});

describe("where it runs", () => {
  it("is on by default unless the server listens on loopback; --mdns and --no-mdns decide otherwise", () => {
    expect(mdnsWanted(undefined, "::")).toBe(true);
    expect(mdnsWanted(undefined, "0.0.0.0")).toBe(true);
    expect(mdnsWanted(undefined, "192.168.15.100")).toBe(true);
    expect(mdnsWanted(undefined, "127.0.0.1")).toBe(false);
    expect(mdnsWanted(undefined, "::1")).toBe(false);
    expect(mdnsWanted(false, "::")).toBe(false);
    expect(mdnsWanted(true, "127.0.0.1")).toBe(true);
  });

  it("reads --mdns, --no-mdns, --mdns-interface and their variables", () => {
    expect(parseOptions([], {}).mdns).toBeUndefined();
    expect(parseOptions(["--mdns"], {}).mdns).toBe(true);
    expect(parseOptions(["--no-mdns"], { APIKEYD_MDNS: "on" }).mdns).toBe(false);
    expect(parseOptions([], { APIKEYD_MDNS: "off" }).mdns).toBe(false);
    expect(parseOptions([], { APIKEYD_MDNS: "yes" }).mdns).toBe(true);
    expect(() => parseOptions(["--mdns", "--no-mdns"], {})).toThrow(/exclude each other/);
    expect(() => parseOptions([], { APIKEYD_MDNS: "maybe" })).toThrow(/on or off/);
    expect(parseOptions(["--mdns-interface", "eth0, wlan0"], {}).mdnsInterfaces).toEqual(["eth0", "wlan0"]);
    expect(parseOptions([], { APIKEYD_MDNS_INTERFACE: "eth1" }).mdnsInterfaces).toEqual(["eth1"]);
  });

  it("advertises the addresses it serves on, per interface", () => {
    const all = {
      lo: [{ address: "127.0.0.1", netmask: "255.0.0.0", family: "IPv4", mac: "", internal: true, cidr: null }],
      eth0: [
        { address: "192.168.15.100", netmask: "255.255.255.0", family: "IPv4", mac: "", internal: false, cidr: null },
        { address: "fe80::1", netmask: "ffff:ffff:ffff:ffff::", family: "IPv6", mac: "", internal: false, cidr: null, scopeid: 2 },
      ],
      wlan0: [{ address: "10.0.0.5", netmask: "255.255.255.0", family: "IPv4", mac: "", internal: false, cidr: null }],
    } as unknown as Parameters<typeof linksFor>[2];
    expect(linksFor("::", undefined, all).map((l) => [l.name, l.v4, l.v6])).toEqual([
      ["eth0", ["192.168.15.100"], ["fe80::1"]],
      ["wlan0", ["10.0.0.5"], []],
    ]);
    expect(linksFor("0.0.0.0", undefined, all).map((l) => [l.name, l.v4, l.v6])).toEqual([
      ["eth0", ["192.168.15.100"], []],
      ["wlan0", ["10.0.0.5"], []],
    ]);
    expect(linksFor("10.0.0.5", undefined, all).map((l) => [l.name, l.v4, l.v6])).toEqual([["wlan0", ["10.0.0.5"], []]]);
    expect(linksFor("::", ["eth0"], all).map((l) => l.name)).toEqual(["eth0"]);
    expect(linksFor("127.0.0.1", undefined, all).map((l) => [l.name, l.v4])).toEqual([["lo", ["127.0.0.1"]]]);
  });
});
