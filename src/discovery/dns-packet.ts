/**
 * DNS messages as mDNS uses them (RFC 1035 §4, RFC 6762 §18): decoding that refuses anything it
 * cannot bound (a name pointer that does not point backwards, a name longer than 255 bytes, a count
 * that the packet cannot hold), and encoding with name compression.
 *
 * Names are dotted strings; a dot or a backslash inside a label is escaped (`\.`, `\\`), as in
 * zone files, so that an instance name such as "Shelf 2.1" stays one label.
 */

export const TYPE = { A: 1, PTR: 12, TXT: 16, AAAA: 28, SRV: 33, NSEC: 47, ANY: 255 } as const;
export const CLASS_IN = 1;
export const CLASS_ANY = 255;
/** The top bit of a question's class (QU: unicast response wanted) and of a record's (cache flush). */
export const TOP_BIT = 0x8000;

/** The largest packet decoded (RFC 6762 §17: 9000 bytes); anything larger is dropped unread. */
export const MAX_PACKET = 9000;
const MAX_NAME = 255;
const MAX_LABEL = 63;

export interface Question {
  readonly name: string;
  readonly type: number;
  readonly class: number;
  /** The QU bit: the asker wants the answer by unicast (RFC 6762 §5.4). */
  readonly unicastResponse: boolean;
}

/** The data of a record, by type; `raw` for types this module does not read. */
export type RData =
  | { readonly kind: "A" | "AAAA"; readonly address: string }
  | { readonly kind: "PTR"; readonly target: string }
  | { readonly kind: "SRV"; readonly priority: number; readonly weight: number; readonly port: number; readonly target: string }
  | { readonly kind: "TXT"; readonly strings: readonly Buffer[] }
  | { readonly kind: "NSEC"; readonly next: string; readonly types: readonly number[] }
  | { readonly kind: "raw"; readonly bytes: Buffer };

export interface ResourceRecord {
  readonly name: string;
  readonly type: number;
  readonly class: number;
  /** The cache-flush bit (RFC 6762 §10.2): set on records that one host alone answers for. */
  readonly cacheFlush: boolean;
  readonly ttl: number;
  readonly data: RData;
}

export interface Packet {
  readonly id: number;
  /** QR: a response. */
  readonly response: boolean;
  readonly opcode: number;
  readonly authoritative: boolean;
  readonly truncated: boolean;
  readonly rcode: number;
  readonly questions: readonly Question[];
  readonly answers: readonly ResourceRecord[];
  readonly authorities: readonly ResourceRecord[];
  readonly additionals: readonly ResourceRecord[];
}

/** A packet that is not a well-formed DNS message; the responder drops it. */
export class DnsFormatError extends Error {
  override name = "DnsFormatError";
}

// ---------------------------------------------------------------------------------------------
// Names

/** The labels of a dotted name (escapes undone); "" and "." are the root (no labels). */
export function nameLabels(name: string): string[] {
  const labels: string[] = [];
  let current = "";
  for (let i = 0; i < name.length; i++) {
    const c = name[i] as string;
    if (c === "\\" && i + 1 < name.length) {
      current += name[++i];
    } else if (c === ".") {
      labels.push(current);
      current = "";
    } else current += c;
  }
  if (current !== "") labels.push(current);
  return labels.filter((l) => l !== "");
}

/** One label escaped for a dotted name. */
export function escapeLabel(label: string): string {
  return label.replace(/[\\.]/g, (c) => `\\${c}`);
}

/** Two names compared as DNS does: ASCII letters without regard to case. */
export function sameName(a: string, b: string): boolean {
  return a.length === b.length && asciiLower(a) === asciiLower(b);
}

/** A name with its ASCII letters lower-cased (a map key that ignores case as DNS does). */
export function asciiLower(name: string): string {
  return name.replace(/[A-Z]+/g, (s) => s.toLowerCase());
}

// ---------------------------------------------------------------------------------------------
// Decoding

class Reader {
  offset = 0;
  constructor(readonly buf: Buffer) {}

  need(n: number): void {
    if (this.offset + n > this.buf.length) throw new DnsFormatError("truncated");
  }
  u8(): number {
    this.need(1);
    return this.buf[this.offset++] as number;
  }
  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.offset);
    this.offset += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.offset);
    this.offset += 4;
    return v;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const b = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return b;
  }

  /**
   * A name at the current offset, following compression pointers. Every pointer must point before
   * the label that holds it, so the walk always ends (no loops), and the name may not pass 255 bytes.
   */
  name(): string {
    const labels: string[] = [];
    let length = 1;
    let at = this.offset;
    let end = -1;
    let limit = at; // a pointer must point before this
    for (;;) {
      if (at >= this.buf.length) throw new DnsFormatError("name runs past the packet");
      const len = this.buf[at] as number;
      if ((len & 0xc0) === 0xc0) {
        if (at + 1 >= this.buf.length) throw new DnsFormatError("name runs past the packet");
        const target = ((len & 0x3f) << 8) | (this.buf[at + 1] as number);
        if (target >= limit) throw new DnsFormatError("name pointer does not point backwards");
        if (end < 0) end = at + 2;
        at = target;
        limit = target;
        continue;
      }
      if ((len & 0xc0) !== 0) throw new DnsFormatError("unknown label type");
      if (len === 0) {
        if (end < 0) end = at + 1;
        break;
      }
      if (at + 1 + len > this.buf.length) throw new DnsFormatError("label runs past the packet");
      length += len + 1;
      if (length > MAX_NAME) throw new DnsFormatError("name longer than 255 bytes");
      labels.push(escapeLabel(this.buf.toString("utf8", at + 1, at + 1 + len)));
      at += 1 + len;
    }
    this.offset = end;
    return labels.join(".");
  }
}

/** Decodes one message; DnsFormatError for anything malformed (the caller drops the packet). */
export function decodePacket(buf: Buffer): Packet {
  if (buf.length > MAX_PACKET) throw new DnsFormatError("larger than 9000 bytes");
  const r = new Reader(buf);
  const id = r.u16();
  const flags = r.u16();
  const counts = [r.u16(), r.u16(), r.u16(), r.u16()] as const;
  // A question takes at least 5 bytes and a record 11: counts the packet cannot hold are refused
  // before anything is allocated for them.
  if (counts[0] * 5 + (counts[1] + counts[2] + counts[3]) * 11 > buf.length - 12) throw new DnsFormatError("counts larger than the packet");
  const questions: Question[] = [];
  for (let i = 0; i < counts[0]; i++) {
    const name = r.name();
    const type = r.u16();
    const klass = r.u16();
    questions.push({ name, type, class: klass & ~TOP_BIT, unicastResponse: (klass & TOP_BIT) !== 0 });
  }
  const records = (n: number): ResourceRecord[] => {
    const out: ResourceRecord[] = [];
    for (let i = 0; i < n; i++) out.push(readRecord(r));
    return out;
  };
  const answers = records(counts[1]);
  const authorities = records(counts[2]);
  const additionals = records(counts[3]);
  return {
    id,
    response: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    authoritative: (flags & 0x0400) !== 0,
    truncated: (flags & 0x0200) !== 0,
    rcode: flags & 0xf,
    questions,
    answers,
    authorities,
    additionals,
  };
}

function readRecord(r: Reader): ResourceRecord {
  const name = r.name();
  const type = r.u16();
  const klass = r.u16();
  const ttl = r.u32();
  const length = r.u16();
  r.need(length);
  const end = r.offset + length;
  let data: RData;
  switch (type) {
    case TYPE.A:
      if (length !== 4) throw new DnsFormatError("A record of the wrong length");
      data = { kind: "A", address: [...r.bytes(4)].join(".") };
      break;
    case TYPE.AAAA:
      if (length !== 16) throw new DnsFormatError("AAAA record of the wrong length");
      data = { kind: "AAAA", address: ipv6Text(r.bytes(16)) };
      break;
    case TYPE.PTR:
      data = { kind: "PTR", target: r.name() };
      break;
    case TYPE.SRV:
      data = { kind: "SRV", priority: r.u16(), weight: r.u16(), port: r.u16(), target: r.name() };
      break;
    case TYPE.TXT: {
      const strings: Buffer[] = [];
      while (r.offset < end) strings.push(Buffer.from(r.bytes(r.u8())));
      data = { kind: "TXT", strings };
      break;
    }
    case TYPE.NSEC: {
      const next = r.name();
      const types: number[] = [];
      while (r.offset < end) {
        const window = r.u8();
        const len = r.u8();
        if (len < 1 || len > 32) throw new DnsFormatError("NSEC bitmap of the wrong length");
        const bits = r.bytes(len);
        for (let i = 0; i < len * 8; i++) if (((bits[i >> 3] as number) & (0x80 >> (i & 7))) !== 0) types.push(window * 256 + i);
      }
      data = { kind: "NSEC", next, types };
      break;
    }
    default:
      data = { kind: "raw", bytes: Buffer.from(r.bytes(length)) };
  }
  if (r.offset !== end) throw new DnsFormatError("record data and its length disagree");
  return { name, type, class: klass & ~TOP_BIT, cacheFlush: (klass & TOP_BIT) !== 0, ttl, data };
}

function ipv6Text(bytes: Buffer): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i));
  // The longest run of two or more zero groups becomes "::" (RFC 5952).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

// ---------------------------------------------------------------------------------------------
// Encoding

function ipv4Bytes(address: string): Buffer {
  const parts = address.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new RangeError(`not an IPv4 address: ${address}`);
  return Buffer.from(parts);
}

function ipv6Bytes(address: string): Buffer {
  const text = address.split("%")[0] as string;
  const [head = "", tail] = text.split("::", 2) as [string, string | undefined];
  const parse = (part: string): number[] => {
    if (part === "") return [];
    const groups: number[] = [];
    for (const piece of part.split(":")) {
      if (piece.includes(".")) {
        const v4 = ipv4Bytes(piece);
        groups.push(v4.readUInt16BE(0), v4.readUInt16BE(2));
      } else groups.push(parseInt(piece, 16));
    }
    return groups;
  };
  const first = parse(head);
  const last = tail === undefined ? [] : parse(tail);
  const zeros = tail === undefined ? 0 : 8 - first.length - last.length;
  const groups = [...first, ...new Array<number>(Math.max(zeros, 0)).fill(0), ...last];
  if (groups.length !== 8 || groups.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff)) throw new RangeError(`not an IPv6 address: ${address}`);
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

class Writer {
  private buf = Buffer.alloc(512);
  length = 0;
  /** Offsets of names already written, by their lower-cased dotted suffix. */
  private names = new Map<string, number>();

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const bigger = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(bigger, 0, 0, this.length);
    this.buf = bigger;
  }
  push(b: Buffer): void {
    this.room(b.length);
    b.copy(this.buf, this.length);
    this.length += b.length;
  }
  u8(v: number): void {
    this.room(1);
    this.buf[this.length++] = v;
  }
  u16(v: number): void {
    this.room(2);
    this.buf.writeUInt16BE(v, this.length);
    this.length += 2;
  }
  u32(v: number): void {
    this.room(4);
    this.buf.writeUInt32BE(v >>> 0, this.length);
    this.length += 4;
  }
  /** Overwrites two bytes written before (a record's data length). */
  setU16(at: number, v: number): void {
    this.buf.writeUInt16BE(v, at);
  }
  /** A name, compressed against the names before it unless `compress` is false. */
  name(name: string, compress = true): void {
    const labels = nameLabels(name);
    for (let i = 0; i < labels.length; i++) {
      const key = labels.slice(i).map((l) => asciiLower(escapeLabel(l))).join(".");
      const at = compress ? this.names.get(key) : undefined;
      if (at !== undefined) {
        this.u16(0xc000 | at);
        return;
      }
      if (compress && this.length < 0x3fff) this.names.set(key, this.length);
      const bytes = Buffer.from(labels[i] as string, "utf8");
      if (bytes.length > MAX_LABEL) throw new RangeError(`label longer than 63 bytes in ${name}`);
      this.u8(bytes.length);
      this.push(bytes);
    }
    this.u8(0);
  }
  result(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.length));
  }
}

/** The data of a record in its uncompressed wire form (what RFC 6762 §8.2 compares). */
export function rdataBytes(data: RData): Buffer {
  const w = new Writer();
  writeRData(w, data, false);
  return w.result();
}

function writeRData(w: Writer, data: RData, compress: boolean): void {
  switch (data.kind) {
    case "A":
      w.push(ipv4Bytes(data.address));
      return;
    case "AAAA":
      w.push(ipv6Bytes(data.address));
      return;
    case "PTR":
      w.name(data.target, compress);
      return;
    case "SRV":
      w.u16(data.priority);
      w.u16(data.weight);
      w.u16(data.port);
      // RFC 6762 §18.14: no compression in SRV targets, for the sake of old resolvers.
      w.name(data.target, false);
      return;
    case "TXT": {
      const strings = data.strings.length === 0 ? [Buffer.alloc(0)] : data.strings;
      for (const s of strings) {
        if (s.length > 255) throw new RangeError("TXT string longer than 255 bytes");
        w.u8(s.length);
        w.push(s);
      }
      return;
    }
    case "NSEC": {
      w.name(data.next, false);
      const windows = new Map<number, number[]>();
      for (const t of data.types) windows.set(t >> 8, [...(windows.get(t >> 8) ?? []), t & 0xff]);
      for (const [window, bits] of [...windows].sort(([a], [b]) => a - b)) {
        const len = (Math.max(...bits) >> 3) + 1;
        const map = Buffer.alloc(len);
        for (const b of bits) map[b >> 3] = (map[b >> 3] as number) | (0x80 >> (b & 7));
        w.u8(window);
        w.u8(len);
        w.push(map);
      }
      return;
    }
    case "raw":
      w.push(data.bytes);
  }
}

/** The type number of a record's data. */
export function typeOf(data: RData): number {
  return data.kind === "raw" ? 0 : TYPE[data.kind];
}

/** Encodes a message, names compressed. */
export function encodePacket(p: Partial<Packet>): Buffer {
  const w = new Writer();
  w.u16(p.id ?? 0);
  let flags = 0;
  if (p.response === true) flags |= 0x8000;
  flags |= ((p.opcode ?? 0) & 0xf) << 11;
  if (p.authoritative === true) flags |= 0x0400;
  if (p.truncated === true) flags |= 0x0200;
  flags |= (p.rcode ?? 0) & 0xf;
  w.u16(flags);
  const questions = p.questions ?? [];
  const sections = [p.answers ?? [], p.authorities ?? [], p.additionals ?? []];
  w.u16(questions.length);
  for (const s of sections) w.u16(s.length);
  for (const q of questions) {
    w.name(q.name);
    w.u16(q.type);
    w.u16((q.class & ~TOP_BIT) | (q.unicastResponse ? TOP_BIT : 0));
  }
  for (const s of sections) {
    for (const rr of s) {
      w.name(rr.name);
      w.u16(rr.type);
      w.u16((rr.class & ~TOP_BIT) | (rr.cacheFlush ? TOP_BIT : 0));
      w.u32(rr.ttl);
      const lengthAt = w.length;
      w.u16(0); // patched below
      const before = w.length;
      writeRData(w, rr.data, true);
      w.setU16(lengthAt, w.length - before);
    }
  }
  return w.result();
}

/** The TXT strings of `key=value` pairs. */
export function txtStrings(pairs: readonly string[]): Buffer[] {
  return pairs.map((p) => Buffer.from(p, "utf8"));
}

/** Whether two records hold the same data (type, class and the uncompressed rdata). */
export function sameData(a: ResourceRecord, b: ResourceRecord): boolean {
  return a.type === b.type && a.class === b.class && rdataBytes(a.data).equals(rdataBytes(b.data));
}
