/**
 * The mDNS responder (RFC 6762) of one device and its DNS-SD service (RFC 6763): probing and
 * renaming, announcing, answering, defending, and the goodbye. It knows nothing of sockets: a
 * Transport sends, and `receive` is handed every datagram that arrives on UDP port 5353.
 *
 * What it owns, for the label L ("enetmini1-abcdef") and the service type S (`_http._tcp` or
 * `_https._tcp`):
 *   L.local             A, AAAA   unique, TTL 120 s: the addresses served on, per interface
 *   L.S.local           SRV, TXT  unique, TTL 120 s / 4500 s
 *   S.local             PTR       shared, TTL 4500 s, to L.S.local
 *   _services._dns-sd._udp.local PTR shared, TTL 4500 s, to S.local
 */

import {
  asciiLower,
  CLASS_ANY,
  CLASS_IN,
  decodePacket,
  DnsFormatError,
  encodePacket,
  escapeLabel,
  rdataBytes,
  sameName,
  TYPE,
  typeOf,
  type Packet,
  type Question,
  type RData,
  type ResourceRecord,
} from "./dns-packet.ts";
import { hostLabel, renamed, type Identity } from "./names.ts";

/** The mDNS port; queries from any other port are legacy unicast queries (RFC 6762 §6.7). */
export const MDNS_PORT = 5353;
export const HOST_TTL = 120;
export const OTHER_TTL = 4500;
/** The most a legacy unicast answer's TTL may be (RFC 6762 §6.7). */
export const LEGACY_TTL = 10;
const PROBE_INTERVAL_MS = 250;
const ANNOUNCE_INTERVAL_MS = 1000;
/** A record is multicast on one interface at most once a second (RFC 6762 §6), a probe's defence every 250 ms. */
const RATE_LIMIT_MS = 1000;
const PROBE_DEFENCE_LIMIT_MS = 250;
const SERVICES = "_services._dns-sd._udp.local";
export const DEVICE_PATH = "/api/v1/device";
export const API_VERSION = "v1";

/** A network interface the responder works on: what it advertises there, and its subnets. */
export interface Link {
  readonly name: string;
  /** Addresses advertised on this interface (A and AAAA records). */
  readonly v4: readonly string[];
  readonly v6: readonly string[];
  /** Every address of the interface with its netmask: a query's source must be on one (RFC 6762 §11). */
  readonly nets: ReadonlyArray<{ readonly address: string; readonly netmask: string }>;
}

/** Where packets go: the mDNS group of one interface and family, or one address. */
export interface Transport {
  multicast(link: Link, family: 4 | 6, packet: Buffer): Promise<void>;
  unicast(address: string, port: number, packet: Buffer): Promise<void>;
}

export interface Source {
  readonly address: string;
  readonly port: number;
}

export interface ResponderConfig {
  readonly identity: Identity;
  readonly secure: boolean;
  /** The TCP port of the HTTP(S) server. */
  readonly port: number;
  readonly links: readonly Link[];
  readonly transport: Transport;
  readonly log?: (level: "info" | "warn", message: string, fields?: Record<string, string | number>) => void;
  readonly random?: () => number;
}

interface Owned {
  readonly rr: ResourceRecord;
  readonly unique: boolean;
  /** Name, type and data: what rate limits and known answers are kept by. */
  readonly key: string;
}

type State = "idle" | "probing" | "announced" | "stopped";

/** The responder; `start()` probes, announces, then answers until `stop()`. */
export class Responder {
  #config: ResponderConfig;
  #state: State = "idle";
  /** 1 for the plain label, n for "-n" after n-1 conflicts. */
  #attempt = 1;
  #timers = new Set<ReturnType<typeof setTimeout>>();
  /** Restarts the probing when bumped (timers of an older round do nothing). */
  #round = 0;
  #conflictTimes: number[] = [];
  /** When each record was last multicast, by interface and record key. */
  #lastMulticast = new Map<string, number>();
  readonly #random: () => number;

  constructor(config: ResponderConfig) {
    this.#config = config;
    this.#random = config.random ?? Math.random;
  }

  /** The label in use (after any renaming): "enetmini1-abcdef", "enetmini1-abcdef-2". */
  get label(): string {
    return renamed(hostLabel(this.#config.identity), this.#attempt);
  }
  get hostName(): string {
    return `${this.label}.local`;
  }
  get serviceType(): string {
    return this.#config.secure ? "_https._tcp.local" : "_http._tcp.local";
  }
  get instanceName(): string {
    return `${escapeLabel(this.label)}.${this.serviceType}`;
  }
  get state(): State {
    return this.#state;
  }

  start(): void {
    if (this.#state !== "idle") return;
    this.#probe(this.#random() * PROBE_INTERVAL_MS);
  }

  /**
   * A new identity (properties.name changed) or new interfaces and addresses. A new label is
   * given up with a goodbye and the new one probed from scratch; new addresses are announced.
   */
  async update(changes: { identity?: Identity; links?: readonly Link[] }): Promise<void> {
    if (this.#state === "stopped") return;
    const oldLabel = hostLabel(this.#config.identity);
    const nameChanged = changes.identity !== undefined && hostLabel(changes.identity) !== oldLabel;
    const txtChanged = changes.identity !== undefined && !sameTxt(this.#txt(this.#config.identity), this.#txt(changes.identity));
    const linksChanged = changes.links !== undefined && JSON.stringify(changes.links) !== JSON.stringify(this.#config.links);
    if (!nameChanged && !txtChanged && !linksChanged) return;
    const wasAnnounced = this.#state === "announced";
    if (wasAnnounced && (nameChanged || linksChanged)) {
      // Records that go away are withdrawn: all of them for a new name, the addresses (and whole
      // interfaces) that are gone otherwise.
      const after = { ...this.#config, ...changes };
      const keep = nameChanged ? new Set<string>() : new Set(after.links.flatMap((l) => this.#records(l, after).map((o) => `${l.name}|${o.key}`)));
      await Promise.all(this.#config.links.map((l) => this.#goodbye(l, this.#records(l).filter((o) => !keep.has(`${l.name}|${o.key}`)))));
    }
    this.#config = { ...this.#config, ...changes };
    if (this.#state === "idle") return;
    if (nameChanged) {
      this.#attempt = 1;
      this.#lastMulticast.clear();
      this.#config.log?.("info", "mDNS: the device name changed; probing the new one", { host: this.hostName });
      this.#probe(0);
    } else if (linksChanged) {
      // §8: connectivity changed, so the names are probed again before they are announced there.
      this.#probe(this.#random() * PROBE_INTERVAL_MS);
    } else if (wasAnnounced) this.#announce();
  }

  /** Goodbye (every record with TTL 0), then nothing more is sent. */
  async stop(): Promise<void> {
    const announced = this.#state === "announced";
    this.#state = "stopped";
    this.#round++;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    if (announced) await Promise.all(this.#config.links.map((l) => this.#goodbye(l, this.#records(l))));
  }

  /** One datagram from port 5353's socket. Anything malformed is dropped without a word. */
  receive(buf: Buffer, from: Source): void {
    if (this.#state === "stopped" || this.#state === "idle") return;
    let packet: Packet;
    try {
      packet = decodePacket(buf);
    } catch (error) {
      if (error instanceof DnsFormatError || error instanceof RangeError) return;
      throw error;
    }
    // RFC 6762 §18.3 and §18.11: other opcodes and rcodes are ignored. §11: only the local link.
    if (packet.opcode !== 0 || packet.rcode !== 0) return;
    const link = this.#linkOf(from.address);
    if (link === undefined) return;
    if (packet.response) {
      if (from.port === MDNS_PORT) this.#checkConflict(packet);
    } else this.#query(packet, from, link);
  }

  // -------------------------------------------------------------------------------------------
  // Records

  #txt(identity: Identity): Buffer[] {
    const pairs = [
      "txtvers=1",
      `path=${DEVICE_PATH}`,
      `api=${API_VERSION}`,
      `https=${this.#config.secure ? 1 : 0}`,
      ...(identity.board === "" ? [] : [`board=${identity.board}`]),
      ...(identity.partNumber === "" ? [] : [`part=${identity.partNumber}`]),
    ];
    return pairs.map((p) => Buffer.from(p, "utf8").subarray(0, 255));
  }

  /** The records of one interface (its addresses only, RFC 6762 §15). */
  #records(link: Link, config: ResponderConfig = this.#config): Owned[] {
    const label = renamed(hostLabel(config.identity), this.#attempt);
    const host = `${label}.local`;
    const type = config.secure ? "_https._tcp.local" : "_http._tcp.local";
    const instance = `${escapeLabel(label)}.${type}`;
    const rr = (name: string, data: RData, ttl: number, unique: boolean): Owned => {
      const record: ResourceRecord = { name, type: typeOf(data), class: CLASS_IN, cacheFlush: unique, ttl, data };
      return { rr: record, unique, key: recordKey(record) };
    };
    return [
      ...link.v4.map((address) => rr(host, { kind: "A", address }, HOST_TTL, true)),
      ...link.v6.map((address) => rr(host, { kind: "AAAA", address }, HOST_TTL, true)),
      rr(instance, { kind: "SRV", priority: 0, weight: 0, port: config.port, target: host }, HOST_TTL, true),
      rr(instance, { kind: "TXT", strings: this.#txt(config.identity) }, OTHER_TTL, true),
      rr(type, { kind: "PTR", target: instance }, OTHER_TTL, false),
      rr(SERVICES, { kind: "PTR", target: type }, OTHER_TTL, false),
    ];
  }

  /** Whether a name is one this responder claims (host or instance). */
  #isOurUniqueName(name: string): boolean {
    return sameName(name, this.hostName) || sameName(name, this.instanceName);
  }

  #linkOf(address: string): Link | undefined {
    const [plain = "", scope] = address.split("%", 2);
    for (const link of this.#config.links) {
      if (scope !== undefined && scope === link.name) return link;
      if (link.nets.some((n) => sameSubnet(plain, n.address, n.netmask))) return link;
    }
    return undefined;
  }

  // -------------------------------------------------------------------------------------------
  // Probing (RFC 6762 §8.1, §8.2) and announcing (§8.3)

  #later(ms: number, fn: () => void): void {
    const round = this.#round;
    const t = setTimeout(() => {
      this.#timers.delete(t);
      if (round === this.#round && this.#state !== "stopped") fn();
    }, ms);
    t.unref?.();
    this.#timers.add(t);
  }

  #probe(delayMs: number): void {
    this.#round++;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    this.#state = "probing";
    // More than 15 conflicts in 10 s: one probe round every 5 s (§8.1).
    const now = Date.now();
    this.#conflictTimes = this.#conflictTimes.filter((t) => now - t < 10_000);
    const wait = this.#conflictTimes.length > 15 ? 5000 : delayMs;
    let sent = 0;
    const next = (): void => {
      if (sent === 3) {
        this.#state = "announced";
        this.#config.log?.("info", "mDNS: advertising", { host: this.hostName, service: this.instanceName });
        this.#announce();
        return;
      }
      for (const link of this.#config.links) {
        const owned = this.#records(link).filter((o) => o.unique);
        const questions: Question[] = [this.hostName, this.instanceName].map((name) => ({ name, type: TYPE.ANY, class: CLASS_IN, unicastResponse: sent === 0 }));
        const packet = encodePacket({ questions, authorities: owned.map((o) => ({ ...o.rr, cacheFlush: false })) });
        this.#sendMulticast(link, packet);
      }
      sent++;
      this.#later(PROBE_INTERVAL_MS, next);
    };
    this.#later(wait, next);
  }

  #announce(): void {
    const once = (): void => {
      for (const link of this.#config.links) this.#multicastRecords(link, this.#records(link), RATE_LIMIT_MS);
    };
    once();
    this.#later(ANNOUNCE_INTERVAL_MS, once);
  }

  #conflict(why: string): void {
    this.#conflictTimes.push(Date.now());
    const before = this.hostName;
    this.#attempt++;
    this.#config.log?.("warn", `mDNS: name in use on the network (${why}); renamed`, { was: before, host: this.hostName });
    this.#probe(0);
  }

  /** A response heard: does anybody else claim our names (§8.1 while probing, §9 after)? */
  #checkConflict(packet: Packet): void {
    const ours = new Set(this.#config.links.flatMap((l) => this.#records(l).map((o) => o.key)));
    for (const rr of [...packet.answers, ...packet.additionals]) {
      if (!this.#isOurUniqueName(rr.name) || rr.ttl === 0) continue;
      if (ours.has(recordKey(rr))) continue; // ours, looped back, or identical data: no conflict
      if (this.#state === "probing") return this.#conflict(`${typeName(rr.type)} ${rr.name} answered`);
      if (this.#state === "announced" && [TYPE.A, TYPE.AAAA, TYPE.SRV, TYPE.TXT].includes(rr.type as 1) && rr.class === CLASS_IN) {
        // §9: probe the name again; if the other host still holds it, the probe renames.
        this.#config.log?.("warn", "mDNS: another host answers for our name; probing it again", { host: this.hostName });
        this.#probe(0);
        return;
      }
    }
  }

  /** Simultaneous probes (§8.2): the lexicographically later set of records wins. */
  #tiebreak(packet: Packet, link: Link): void {
    const mine = this.#records(link).filter((o) => o.unique);
    for (const name of [this.hostName, this.instanceName]) {
      const theirs = packet.authorities.filter((rr) => sameName(rr.name, name));
      if (theirs.length === 0) continue;
      const order = compareRecordSets(
        mine.filter((o) => sameName(o.rr.name, name)).map((o) => o.rr),
        theirs,
      );
      if (order < 0) {
        // We lose: wait a second, then probe again (the other host will then defend it).
        this.#probe(1000);
        return;
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Answering (§6, §7)

  #query(packet: Packet, from: Source, link: Link): void {
    if (this.#state === "probing") {
      if (packet.authorities.length > 0) this.#tiebreak(packet, link);
      return;
    }
    if (this.#state !== "announced") return;
    const owned = this.#records(link);
    const legacy = from.port !== MDNS_PORT;
    const probe = packet.authorities.length > 0;
    const answers: Owned[] = [];
    const wantsUnicast = new Set<string>();
    for (const q of packet.questions) {
      if (q.class !== CLASS_IN && q.class !== CLASS_ANY) continue;
      for (const o of owned) {
        if (!sameName(o.rr.name, q.name) || (q.type !== TYPE.ANY && q.type !== o.rr.type)) continue;
        // Known-answer suppression (§7.1): the asker has it with at least half its TTL left.
        if (!legacy && packet.answers.some((k) => recordKey(k) === o.key && k.ttl >= o.rr.ttl / 2)) continue;
        if (!answers.includes(o)) answers.push(o);
        if (q.unicastResponse) wantsUnicast.add(o.key);
      }
    }
    if (answers.length === 0) return;
    const additionals = this.#additionals(answers, owned).filter((o) => legacy || !packet.answers.some((k) => recordKey(k) === o.key));
    if (legacy) {
      // §6.7: to the source, with the query's ID and question, no cache-flush bit, TTL at most 10 s.
      const cap = (o: Owned): ResourceRecord => ({ ...o.rr, cacheFlush: false, ttl: Math.min(o.rr.ttl, LEGACY_TTL) });
      const reply = encodePacket({
        id: packet.id,
        response: true,
        authoritative: true,
        questions: packet.questions,
        answers: answers.map(cap),
        additionals: additionals.map(cap),
      });
      void this.#config.transport.unicast(from.address, from.port, reply).catch(() => undefined);
      return;
    }
    // §5.4: a QU question is answered by unicast, unless the record was not multicast on this
    // interface within a quarter of its TTL (then everybody's cache gains from a multicast).
    const now = Date.now();
    const unicast = answers.filter((o) => wantsUnicast.has(o.key) && now - (this.#lastMulticast.get(`${link.name}|${o.key}`) ?? -Infinity) < (o.rr.ttl * 1000) / 4);
    const multicast = answers.filter((o) => !unicast.includes(o));
    if (unicast.length > 0) {
      const reply = encodePacket({ response: true, authoritative: true, answers: unicast.map((o) => o.rr), additionals: additionals.filter((o) => !unicast.includes(o)).map((o) => o.rr) });
      void this.#config.transport.unicast(from.address, from.port, reply).catch(() => undefined);
    }
    if (multicast.length === 0) return;
    // §6: answers to a question for unique records go at once (a probe's at once too); answers
    // holding shared records wait 20-120 ms so that many responders do not answer together; a
    // truncated query's known answers continue in further packets, so wait 400-500 ms for those.
    const shared = multicast.some((o) => !o.unique);
    const delay = probe ? 0 : packet.truncated ? 400 + this.#random() * 100 : shared ? 20 + this.#random() * 100 : 0;
    const limit = probe ? PROBE_DEFENCE_LIMIT_MS : RATE_LIMIT_MS;
    const send = (): void => this.#multicastRecords(link, multicast, limit, additionals);
    if (delay === 0) send();
    else this.#later(delay, send);
  }

  /** RFC 6763 §12: with a PTR the SRV, TXT and addresses; with an SRV the addresses. */
  #additionals(answers: readonly Owned[], owned: readonly Owned[]): Owned[] {
    const extra: Owned[] = [];
    const add = (o: Owned): void => {
      if (!answers.includes(o) && !extra.includes(o)) extra.push(o);
    };
    for (const a of answers) {
      if (a.rr.data.kind === "PTR") {
        const target = a.rr.data.target;
        for (const o of owned) if (sameName(o.rr.name, target) && (o.rr.type === TYPE.SRV || o.rr.type === TYPE.TXT)) add(o);
      }
    }
    for (const a of [...answers, ...extra]) {
      if (a.rr.data.kind === "SRV") {
        const target = a.rr.data.target;
        for (const o of owned) if (sameName(o.rr.name, target) && (o.rr.type === TYPE.A || o.rr.type === TYPE.AAAA)) add(o);
      }
      if (a.rr.type === TYPE.A || a.rr.type === TYPE.AAAA) {
        for (const o of owned) if (sameName(o.rr.name, a.rr.name) && (o.rr.type === TYPE.A || o.rr.type === TYPE.AAAA)) add(o);
      }
    }
    return extra;
  }

  /** Multicasts records on one interface, leaving out those sent there less than `limitMs` ago. */
  #multicastRecords(link: Link, records: readonly Owned[], limitMs: number, additionals: readonly Owned[] = []): void {
    const now = Date.now();
    const due = records.filter((o) => now - (this.#lastMulticast.get(`${link.name}|${o.key}`) ?? -Infinity) >= limitMs);
    if (due.length === 0) return;
    for (const o of due) this.#lastMulticast.set(`${link.name}|${o.key}`, now);
    const packet = encodePacket({ response: true, authoritative: true, answers: due.map((o) => o.rr), additionals: additionals.filter((o) => !due.includes(o)).map((o) => o.rr) });
    this.#sendMulticast(link, packet);
  }

  #goodbye(link: Link, records: readonly Owned[]): Promise<void> {
    if (records.length === 0) return Promise.resolve();
    const packet = encodePacket({ response: true, authoritative: true, answers: records.map((o) => ({ ...o.rr, ttl: 0 })) });
    return this.#sendMulticast(link, packet);
  }

  #sendMulticast(link: Link, packet: Buffer): Promise<void> {
    const sends: Promise<void>[] = [];
    if (link.v4.length > 0) sends.push(this.#config.transport.multicast(link, 4, packet).catch(() => undefined));
    if (link.v6.length > 0) sends.push(this.#config.transport.multicast(link, 6, packet).catch(() => undefined));
    return Promise.all(sends).then(() => undefined);
  }
}

/** Name (case-folded), type, class and data: one record's identity. */
export function recordKey(rr: ResourceRecord): string {
  return `${asciiLower(rr.name)}|${rr.type}|${rr.class}|${rdataBytes(rr.data).toString("hex")}`;
}

function typeName(type: number): string {
  return Object.entries(TYPE).find(([, v]) => v === type)?.[0] ?? String(type);
}

function sameTxt(a: readonly Buffer[], b: readonly Buffer[]): boolean {
  return a.length === b.length && a.every((s, i) => s.equals(b[i] as Buffer));
}

/**
 * RFC 6762 §8.2.1: each set sorted by class, type and data, then compared record by record; the
 * set that runs out first is the earlier. Negative when `a` is earlier (loses).
 */
export function compareRecordSets(a: readonly ResourceRecord[], b: readonly ResourceRecord[]): number {
  const bytes = (rr: ResourceRecord): Buffer => {
    const head = Buffer.alloc(4);
    head.writeUInt16BE(rr.class & 0x7fff, 0);
    head.writeUInt16BE(rr.type, 2);
    return Buffer.concat([head, rdataBytes(rr.data)]);
  };
  const sa = a.map(bytes).sort(Buffer.compare);
  const sb = b.map(bytes).sort(Buffer.compare);
  for (let i = 0; i < Math.min(sa.length, sb.length); i++) {
    const c = Buffer.compare(sa[i] as Buffer, sb[i] as Buffer);
    if (c !== 0) return c;
  }
  return sa.length - sb.length;
}

/** Whether `address` is in the subnet of `net`/`netmask` (both IPv4 or both IPv6). */
export function sameSubnet(address: string, net: string, netmask: string): boolean {
  const a = addressBytes(address);
  const n = addressBytes(net.split("%")[0] as string);
  const m = addressBytes(netmask);
  if (a === undefined || n === undefined || m === undefined || a.length !== n.length || m.length !== a.length) return false;
  for (let i = 0; i < a.length; i++) if (((a[i] as number) & (m[i] as number)) !== ((n[i] as number) & (m[i] as number))) return false;
  return true;
}

function addressBytes(address: string): Buffer | undefined {
  try {
    const v4mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    const text = v4mapped?.[1] ?? address;
    return rdataBytes(text.includes(":") ? { kind: "AAAA", address: text } : { kind: "A", address: text });
  } catch {
    return undefined;
  }
}
