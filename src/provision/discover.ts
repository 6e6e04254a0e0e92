/**
 * `provision --discover`: finds the devices of the LAN by DNS-SD (docs/discovery.md), confirms
 * each with `GET /api/v1/device` (it must answer the MKC envelope), and writes an inventory
 * skeleton (hosts, no keys) in the plain-text form `--inventory` reads.
 *
 * It asks as a "legacy" querier (RFC 6762 §6.7): from a port of its own, to the mDNS group on
 * every IPv4 interface, so it works beside an avahi-daemon or mDNSResponder that holds 5353; the
 * responders answer it by unicast.
 */

import * as dgram from "node:dgram";
import { writeFile } from "node:fs/promises";
import * as os from "node:os";
import { printable } from "../common/printable.ts";
import { decodePacket, encodePacket, nameLabels, sameName, TYPE, CLASS_IN, type Question, type ResourceRecord } from "../discovery/dns-packet.ts";
import { deviceRequest, DeviceError } from "./device-client.ts";

export const SERVICE_TYPES = ["_http._tcp.local", "_https._tcp.local"] as const;
const GROUP = "224.0.0.251";
const MDNS_PORT = 5353;
/** Questions are asked again at this pace while the browse lasts (responders answer at most once a second). */
const ASK_EVERY_MS = 1000;
/** The most instances one browse keeps (a hostile LAN could claim thousands). */
const MAX_INSTANCES = 1024;

/** One service instance heard of. */
export interface Instance {
  readonly name: string;
  readonly secure: boolean;
  target?: string;
  port?: number;
  txt: Record<string, string>;
  addresses: string[];
}

export interface BrowseOptions {
  readonly timeoutMs: number;
  /** Internal (tests): the UDP port and the interfaces' IPv4 addresses to ask on. */
  readonly port?: number;
  readonly interfaces?: readonly string[];
}

/** Every non-loopback IPv4 address of this machine: the interfaces to ask on. */
function localIPv4(): string[] {
  return Object.values(os.networkInterfaces())
    .flatMap((infos) => infos ?? [])
    .filter((i) => i.family === "IPv4" && !i.internal)
    .map((i) => i.address);
}

/** Browses `_http._tcp` and `_https._tcp` for `timeoutMs`; the instances with what was learnt of them. */
export async function browse(options: BrowseOptions): Promise<Instance[]> {
  const socket = dgram.createSocket("udp4");
  const instances = new Map<string, Instance>();
  const records: ResourceRecord[] = [];
  socket.on("message", (msg) => {
    try {
      const packet = decodePacket(msg);
      if (packet.response && records.length < 16 * MAX_INSTANCES) records.push(...packet.answers, ...packet.additionals);
    } catch {
      // not DNS: ignored
    }
  });
  socket.on("error", () => undefined);
  await new Promise<void>((resolve) => socket.bind(0, resolve));
  const interfaces = options.interfaces ?? localIPv4();
  const port = options.port ?? MDNS_PORT;

  const learn = (): void => {
    for (const rr of records) {
      if (rr.data.kind === "PTR" && rr.ttl > 0 && SERVICE_TYPES.some((t) => sameName(rr.name, t)) && instances.size < MAX_INSTANCES) {
        const key = rr.data.target.toLowerCase();
        if (!instances.has(key)) instances.set(key, { name: rr.data.target, secure: sameName(rr.name, "_https._tcp.local"), txt: {}, addresses: [] });
      }
    }
    for (const instance of instances.values()) {
      for (const rr of records) {
        if (rr.ttl === 0) continue;
        if (rr.data.kind === "SRV" && sameName(rr.name, instance.name)) {
          instance.target = rr.data.target;
          instance.port = rr.data.port;
        } else if (rr.data.kind === "TXT" && sameName(rr.name, instance.name)) {
          for (const s of rr.data.strings) {
            const text = s.toString("utf8");
            const eq = text.indexOf("=");
            if (eq > 0) instance.txt[text.slice(0, eq).toLowerCase()] = text.slice(eq + 1);
          }
        }
      }
      for (const rr of records) {
        if ((rr.data.kind === "A" || rr.data.kind === "AAAA") && rr.ttl > 0 && instance.target !== undefined && sameName(rr.name, instance.target)) {
          if (!instance.addresses.includes(rr.data.address)) instance.addresses.push(rr.data.address);
        }
      }
    }
    records.length = 0;
  };

  const ask = async (): Promise<void> => {
    learn();
    const questions: Question[] = SERVICE_TYPES.map((name) => ({ name, type: TYPE.PTR, class: CLASS_IN, unicastResponse: false }));
    for (const instance of instances.values()) {
      if (instance.port === undefined) questions.push({ name: instance.name, type: TYPE.SRV, class: CLASS_IN, unicastResponse: false });
      if (Object.keys(instance.txt).length === 0) questions.push({ name: instance.name, type: TYPE.TXT, class: CLASS_IN, unicastResponse: false });
      if (instance.target !== undefined && instance.addresses.length === 0) questions.push({ name: instance.target, type: TYPE.A, class: CLASS_IN, unicastResponse: false });
    }
    const packet = encodePacket({ id: Math.floor(Math.random() * 0xffff), questions: questions.slice(0, 64) });
    for (const address of interfaces) {
      await new Promise<void>((resolve) => {
        try {
          socket.setMulticastInterface(address);
          socket.send(packet, port, GROUP, () => resolve());
        } catch {
          resolve();
        }
      });
    }
  };

  const deadline = Date.now() + options.timeoutMs;
  while (Date.now() < deadline) {
    await ask();
    await new Promise((resolve) => setTimeout(resolve, Math.min(ASK_EVERY_MS, Math.max(0, deadline - Date.now()))));
  }
  learn();
  socket.close();
  return [...instances.values()];
}

/** An instance confirmed by its `device` document, or why not. */
export interface Confirmed {
  readonly instance: Instance;
  /** The inventory line's host: "ADDRESS:PORT" or "https://ADDRESS:PORT". */
  readonly host: string | undefined;
  readonly mac: string;
  readonly board: string;
  readonly problem: string | undefined;
}

/** GET /api/v1/device at the instance's first IPv4 address (else its first IPv6 one). */
export async function confirm(instance: Instance, timeoutMs: number, ca: readonly string[] | undefined): Promise<Confirmed> {
  const scheme = instance.secure ? "https" : "http";
  const address = instance.addresses.find((a) => !a.includes(":")) ?? instance.addresses.find((a) => !a.toLowerCase().startsWith("fe80"));
  const none = { instance, host: undefined, mac: "", board: "" };
  if (instance.port === undefined || address === undefined) return { ...none, problem: "no address or port was learnt (no SRV or A record heard)" };
  const hostPart = address.includes(":") ? `[${address}]:${instance.port}` : `${address}:${instance.port}`;
  const host = scheme === "https" ? `https://${hostPart}` : hostPart;
  try {
    const answer = await deviceRequest({ scheme, hostname: address, port: instance.port }, "GET", "/api/v1/device", {
      timeoutMs,
      ...(ca === undefined ? {} : { ca }),
    });
    if (answer.status !== 200 || answer.error !== 0) return { ...none, problem: `GET /api/v1/device answered HTTP ${answer.status}, error ${answer.error}` };
    const doc = (Array.isArray(answer.data) ? answer.data[0] : answer.data) as { address?: unknown; board?: { pcb?: { name?: unknown } } } | undefined;
    const mac = typeof doc?.address === "string" ? doc.address : "";
    const board = typeof doc?.board?.pcb?.name === "string" ? doc.board.pcb.name : "";
    return { instance, host, mac, board, problem: undefined };
  } catch (error) {
    return { ...none, problem: error instanceof DeviceError ? error.message : String(error) };
  }
}

/** The inventory skeleton: one host per line, what was found as a comment. */
export function inventoryText(found: readonly Confirmed[], now = new Date()): string {
  const lines = [
    `# Devices found by provision --discover on ${now.toISOString()}: hosts only, no keys.`,
    "# Each is taken to still have the factory apikeys pair; see docs/provisioning.md for other forms.",
  ];
  for (const c of found) {
    if (c.host === undefined) continue;
    const label = nameLabels(c.instance.name)[0] ?? c.instance.name;
    const about = [label, c.instance.target, c.mac === "" ? undefined : `MAC ${c.mac}`, c.board === "" ? undefined : c.board].filter((x) => x !== undefined);
    // Names came from the network: nothing in them may end the comment's line or hide in it.
    lines.push(`${c.host}  # ${printable(about.join(", ")).replace(/[\r\n]/g, " ")}`);
  }
  return lines.join("\n") + "\n";
}

/** The whole `--discover` run; the exit code (0 some device found, 1 none, 2 the output file exists). */
export async function runDiscover(settings: { timeoutMs: number; out: string | undefined; ca: readonly string[] | undefined }, stdout: NodeJS.WritableStream, stderr: NodeJS.WritableStream): Promise<number> {
  stderr.write(`Browsing _http._tcp and _https._tcp for ${settings.timeoutMs / 1000} s ...\n`);
  const instances = await browse({ timeoutMs: settings.timeoutMs });
  const results: Confirmed[] = [];
  for (let i = 0; i < instances.length; i += 8) {
    results.push(...(await Promise.all(instances.slice(i, i + 8).map((instance) => confirm(instance, Math.min(settings.timeoutMs, 10_000), settings.ca)))));
  }
  const good = results.filter((r) => r.problem === undefined);
  for (const r of results) {
    if (r.problem !== undefined) stderr.write(`not an MKC device, left out: ${printable(r.instance.name)}: ${printable(r.problem)}\n`);
  }
  const text = inventoryText(good);
  if (settings.out === undefined) stdout.write(text);
  else {
    try {
      // Never over an existing file: --out of a provisioning run is the file that holds the keys.
      await writeFile(settings.out, text, { flag: "wx", mode: 0o644 });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      stderr.write(code === "EEXIST" ? `provision: ${printable(settings.out)} exists; --discover writes a new file only\n` : `provision: ${printable(settings.out)}: ${code ?? String(error)}\n`);
      return 2;
    }
  }
  stderr.write(`${good.length} device${good.length === 1 ? "" : "s"} found${settings.out === undefined ? "" : `, written to ${printable(settings.out)}`}.\n`);
  return good.length > 0 ? 0 : 1;
}
