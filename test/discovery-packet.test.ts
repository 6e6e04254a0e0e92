/**
 * The DNS message codec of src/discovery/dns-packet.ts against packets written byte by byte from
 * RFC 1035 §4 and RFC 6762 (as a capture shows them), against an independent codec (the
 * dns-packet package), and against malformed and hostile input; and the host names of names.ts.
 */

import { describe, expect, it } from "vitest";
import dnsPacket from "dns-packet";
import { decodePacket, DnsFormatError, encodePacket, nameLabels, rdataBytes, TYPE, CLASS_IN, type Packet } from "../src/discovery/dns-packet.ts";
import { hostLabel, readIdentity, renamed } from "../src/discovery/names.ts";
import { seededRandom } from "./helpers.ts";

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

/**
 * A DNS-SD announcement as a capture shows it: PTR _http._tcp.local -> dev._http._tcp.local (the
 * instance written as "dev" + a pointer to offset 12), then the SRV of the instance (its name a
 * pointer to offset 40) with the cache-flush bit, port 8080, target dev.local uncompressed.
 */
const ANNOUNCEMENT = hex(`
  0000 8400 0000 0002 0000 0000
  05 5f68747470 04 5f746370 05 6c6f63616c 00
  000c 0001 00001194 0006 03 646576 c00c
  c028 0021 8001 00000078 0011 0000 0000 1f90 03 646576 05 6c6f63616c 00
`);

/** A query as avahi sends it: A and AAAA of dev.local, the second name a pointer; QU on the first. */
const QUERY = hex(`
  0000 0000 0002 0000 0000 0000
  03 646576 05 6c6f63616c 00 0001 8001
  c00c 001c 0001
`);

describe("decoding packets as captured", () => {
  it("reads a DNS-SD announcement with compressed names", () => {
    const p = decodePacket(ANNOUNCEMENT);
    expect(p.response).toBe(true);
    expect(p.authoritative).toBe(true);
    expect(p.answers).toEqual([
      { name: "_http._tcp.local", type: TYPE.PTR, class: CLASS_IN, cacheFlush: false, ttl: 4500, data: { kind: "PTR", target: "dev._http._tcp.local" } },
      {
        name: "dev._http._tcp.local",
        type: TYPE.SRV,
        class: CLASS_IN,
        cacheFlush: true,
        ttl: 120,
        data: { kind: "SRV", priority: 0, weight: 0, port: 8080, target: "dev.local" },
      },
    ]);
  });

  it("reads a query's questions and the QU bit", () => {
    const p = decodePacket(QUERY);
    expect(p.response).toBe(false);
    expect(p.questions).toEqual([
      { name: "dev.local", type: TYPE.A, class: CLASS_IN, unicastResponse: true },
      { name: "dev.local", type: TYPE.AAAA, class: CLASS_IN, unicastResponse: false },
    ]);
  });

  it("encodes the announcement to the same bytes", () => {
    const p = decodePacket(ANNOUNCEMENT);
    expect(encodePacket(p).toString("hex")).toBe(ANNOUNCEMENT.toString("hex"));
    expect(encodePacket(decodePacket(QUERY)).toString("hex")).toBe(QUERY.toString("hex"));
  });
});

describe("against an independent codec (dns-packet)", () => {
  const sample: Partial<Packet> = {
    id: 0x1234,
    response: true,
    authoritative: true,
    questions: [{ name: "Shelf\\.2._http._tcp.local", type: TYPE.ANY, class: CLASS_IN, unicastResponse: true }],
    answers: [
      { name: "gw-abcdef.local", type: TYPE.A, class: CLASS_IN, cacheFlush: true, ttl: 120, data: { kind: "A", address: "192.168.15.100" } },
      { name: "gw-abcdef.local", type: TYPE.AAAA, class: CLASS_IN, cacheFlush: true, ttl: 120, data: { kind: "AAAA", address: "fd00::5:0:0:1" } },
      { name: "gw-abcdef._http._tcp.local", type: TYPE.TXT, class: CLASS_IN, cacheFlush: true, ttl: 4500, data: { kind: "TXT", strings: [Buffer.from("path=/api/v1/device"), Buffer.from("board=mkc1601")] } },
      { name: "_services._dns-sd._udp.local", type: TYPE.PTR, class: CLASS_IN, cacheFlush: false, ttl: 4500, data: { kind: "PTR", target: "_http._tcp.local" } },
    ],
    additionals: [
      { name: "gw-abcdef._http._tcp.local", type: TYPE.SRV, class: CLASS_IN, cacheFlush: true, ttl: 120, data: { kind: "SRV", priority: 0, weight: 0, port: 8443, target: "gw-abcdef.local" } },
      { name: "gw-abcdef.local", type: TYPE.NSEC, class: CLASS_IN, cacheFlush: true, ttl: 120, data: { kind: "NSEC", next: "gw-abcdef.local", types: [TYPE.A, TYPE.AAAA] } },
    ],
  };

  it("our encoding is read back by dns-packet", () => {
    const theirs = dnsPacket.decode(encodePacket(sample));
    expect(theirs.id).toBe(0x1234);
    expect(theirs.type).toBe("response");
    // dns-packet flattens labels into dotted text; on the wire "Shelf.2" is one label of 7 bytes.
    expect(theirs.questions).toEqual([{ name: "Shelf.2._http._tcp.local", type: "ANY", class: "UNKNOWN_32769" }]);
    expect(encodePacket(sample).subarray(12, 20).toString("latin1")).toBe("\x07Shelf.2");
    const answers = theirs.answers ?? [];
    expect(answers.map((a) => [a.name, a.type, "data" in a ? a.data : undefined])).toEqual([
      ["gw-abcdef.local", "A", "192.168.15.100"],
      ["gw-abcdef.local", "AAAA", "fd00::5:0:0:1"],
      ["gw-abcdef._http._tcp.local", "TXT", [Buffer.from("path=/api/v1/device"), Buffer.from("board=mkc1601")]],
      ["_services._dns-sd._udp.local", "PTR", "_http._tcp.local"],
    ]);
    expect(answers.map((a) => ("flush" in a ? a.flush : undefined))).toEqual([true, true, true, false]);
    const srv = (theirs.additionals ?? [])[0] as { data: unknown };
    expect(srv.data).toEqual({ priority: 0, weight: 0, port: 8443, target: "gw-abcdef.local" });
    const nsec = (theirs.additionals ?? [])[1] as { data: { rrtypes: string[] } };
    expect(nsec.data.rrtypes).toEqual(["A", "AAAA"]);
  });

  it("reads what dns-packet encodes", () => {
    const buf = dnsPacket.encode({
      type: "response",
      id: 7,
      flags: dnsPacket.AUTHORITATIVE_ANSWER,
      answers: [
        { name: "printer.local", type: "A", ttl: 120, flush: true, data: "10.0.0.9" },
        { name: "printer._ipp._tcp.local", type: "SRV", ttl: 120, data: { port: 631, target: "printer.local" } },
        { name: "printer._ipp._tcp.local", type: "TXT", ttl: 4500, data: ["rp=ipp/print", "ty=Laser"] },
        { name: "printer.local", type: "AAAA", ttl: 120, data: "fe80::1" },
      ],
    });
    const p = decodePacket(buf);
    expect(p.id).toBe(7);
    expect(p.answers.map((a) => a.data)).toEqual([
      { kind: "A", address: "10.0.0.9" },
      { kind: "SRV", priority: 0, weight: 0, port: 631, target: "printer.local" },
      { kind: "TXT", strings: [Buffer.from("rp=ipp/print"), Buffer.from("ty=Laser")] },
      { kind: "AAAA", address: "fe80::1" },
    ]);
    expect(p.answers[0]?.cacheFlush).toBe(true);
  });

  it("compresses names (the announcement of a device fits in far fewer bytes than written out)", () => {
    const plain = (sample.answers ?? []).reduce((n, r) => n + r.name.length + 2, 0);
    const ours = encodePacket({ answers: sample.answers ?? [] });
    expect(ours.length).toBeLessThan(12 + plain + 4 * 10 + 60);
    expect(dnsPacket.decode(ours).answers?.length).toBe(4);
  });
});

describe("malformed and hostile packets", () => {
  const bad: Array<[string, Buffer]> = [
    ["empty", Buffer.alloc(0)],
    ["a header cut short", hex("0000 8400 00")],
    ["a name pointing at itself (a loop)", hex("0000 0000 0001 0000 0000 0000 c00c 0001 0001")],
    ["a name pointing forwards", hex("0000 0000 0001 0000 0000 0000 c012 0001 0001 00")],
    ["two pointers pointing at each other", hex("0000 0000 0002 0000 0000 0000 c012 0001 0001 c00c 0001 0001")],
    ["a label past the end", hex("0000 0000 0001 0000 0000 0000 3f 6162")],
    ["a reserved label type", hex("0000 0000 0001 0000 0000 0000 80 0001 0001")],
    ["counts the packet cannot hold", hex("0000 0000 ffff ffff ffff ffff 00 0001 0001")],
    ["an A record of 5 bytes", hex("0000 8400 0000 0001 0000 0000 00 0001 0001 00000078 0005 0102030405")],
    ["a record longer than the packet", hex("0000 8400 0000 0001 0000 0000 00 0010 0001 00000078 00ff 00")],
    ["an SRV whose data and length disagree", hex("0000 8400 0000 0001 0000 0000 00 0021 0001 00000078 0008 0000 0000 1f90 0100")],
    ["more than 9000 bytes", Buffer.alloc(9001)],
  ];
  it.each(bad)("refuses %s with DnsFormatError", (_what, buf) => {
    expect(() => decodePacket(buf)).toThrow(DnsFormatError);
  });

  it("refuses a name longer than 255 bytes, even when pointers build it", () => {
    const label = (n: number): string => "3f" + "61".repeat(63).slice(0, 126) + (n === 0 ? "" : "");
    // Four 63-byte labels at offset 12, then a name of one more label pointing at them: 5 x 64 > 255.
    const first = label(0).repeat(3) + "00";
    const buf = hex("0000 0000 0002 0000 0000 0000" + first + "0001 0001" + "3f" + "62".repeat(63) + "c00c 0001 0001");
    expect(() => decodePacket(buf)).toThrow(DnsFormatError);
  });

  it("never throws anything but DnsFormatError, nor hangs, on 5000 mutations of real packets", () => {
    const random = seededRandom(17);
    const seeds = [ANNOUNCEMENT, QUERY, encodePacket({ answers: [{ name: "a.b.local", type: TYPE.TXT, class: 1, cacheFlush: false, ttl: 1, data: { kind: "TXT", strings: [Buffer.from("x=y")] } }] })];
    for (let i = 0; i < 5000; i++) {
      const buf = Buffer.from(seeds[i % seeds.length] as Buffer);
      const flips = 1 + Math.floor(random() * 4);
      for (let f = 0; f < flips; f++) buf[Math.floor(random() * buf.length)] = Math.floor(random() * 256);
      const cut = random() < 0.2 ? buf.subarray(0, Math.floor(random() * buf.length)) : buf;
      try {
        decodePacket(cut);
      } catch (error) {
        expect(error).toBeInstanceOf(DnsFormatError);
      }
    }
  });
});

describe("names", () => {
  it("the host label is <name>-<last 6 hex digits of the MAC>, lower case", () => {
    expect(hostLabel({ name: "eNetMini1", mac: "004082ABCDEF" })).toBe("enetmini1-abcdef");
    expect(hostLabel({ name: "Shelf 7 / Pump", mac: "00:40:82:12:34:56" })).toBe("shelf-7-pump-123456");
    expect(hostLabel({ name: "Gerät_Süd.2", mac: "004082ABCDEF" })).toBe("gerat-sud-2-abcdef");
    expect(hostLabel({ name: "--", mac: "004082ABCDEF" })).toBe("device-abcdef");
    expect(hostLabel({ name: "x".repeat(80), mac: "004082ABCDEF" })).toHaveLength(59);
    expect(renamed("enetmini1-abcdef", 1)).toBe("enetmini1-abcdef");
    expect(renamed("enetmini1-abcdef", 3)).toBe("enetmini1-abcdef-3");
  });

  it("reads the identity from the device and properties documents", () => {
    const device = [{ address: "004082ABCDEF", board: { pcb: { name: "mkc1601" }, partNumber: 101648 } }];
    expect(readIdentity(device, { name: "eNetMini1" })).toEqual({ name: "eNetMini1", mac: "004082ABCDEF", board: "mkc1601", partNumber: "101648" });
    expect(readIdentity(undefined, null)).toEqual({ name: "", mac: "", board: "", partNumber: "" });
  });

  it("keeps a dot inside a label escaped", () => {
    expect(nameLabels("Shelf\\.2._http._tcp.local")).toEqual(["Shelf.2", "_http", "_tcp", "local"]);
    expect(rdataBytes({ kind: "PTR", target: "a\\.b.local" }).toString("hex")).toBe("03612e62056c6f63616c00");
  });
});
