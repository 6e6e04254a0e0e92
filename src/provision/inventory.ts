/** The inventory: which devices to provision and the `apikeys` pair each one has now. */

import { jsonFaultOffset, lineAndColumn } from "../common/json-position.ts";
import { FACTORY_APIKEYS, isPair, type Pair } from "./keys.ts";

/** One device of the inventory. */
export interface InventoryDevice {
  /** The host as written in the inventory, scheme included; the output file is keyed by it. */
  readonly host: string;
  /** "https" for a host written https://...; "http" otherwise. */
  readonly scheme: "http" | "https";
  readonly hostname: string;
  readonly port: number;
  /** The `apikeys` pair the inventory says the device has. */
  readonly apikeys: Pair;
}

/** An inventory the tool will not guess about; the message says which entry and why. */
export class InventoryError extends Error {
  override name = "InventoryError";
}

const NAME_HOST = /^([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::(\d{1,5}))?$/;
const IPV6_HOST = /^\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?$/;
const SCHEME = /^(https?):\/\//i;
const DEFAULT_PORT = 80;
const DEFAULT_HTTPS_PORT = 443;

/** Splits "192.168.15.100", "gw1.local:8080" or "[fd00::5]:8080"; undefined when it is none of these. */
export function parseHost(text: string, defaultPort = DEFAULT_PORT): { hostname: string; port: number } | undefined {
  const match = IPV6_HOST.exec(text) ?? NAME_HOST.exec(text);
  if (match === null) return undefined;
  const port = match[2] === undefined ? defaultPort : Number(match[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  return { hostname: match[1] as string, port };
}

/**
 * A host with an optional scheme: "https://HOST[:PORT]" (port 443 unless given) is reached over
 * HTTPS; "HOST[:PORT]" and "http://HOST[:PORT]" over plain HTTP (port 80 unless given).
 */
export function parseDeviceAddress(text: string): { scheme: "http" | "https"; hostname: string; port: number } | undefined {
  const match = SCHEME.exec(text);
  const scheme = match?.[1]?.toLowerCase() === "https" ? "https" : "http";
  const address = parseHost(text.slice(match?.[0].length ?? 0), scheme === "https" ? DEFAULT_HTTPS_PORT : DEFAULT_PORT);
  return address === undefined ? undefined : { scheme, ...address };
}

/**
 * Reads an inventory in one of its three forms:
 * - a JSON array whose entries are `{"host": "...", "apikeys": {"rd": "...", "wr": "..."}}`, or a
 *   bare host string for a device that still has the factory pair;
 * - a JSON object `{"apikeys": {...}, "hosts": ["...", ...]}`: a batch sharing one pair;
 * - plain text, one host per line (`#` starts a comment): devices with the factory pair.
 */
export function parseInventory(text: string): InventoryDevice[] {
  const trimmed = text.trim();
  let entries: Array<{ where: string; value: unknown; shared: Pair }>;
  if (trimmed.startsWith("[") || trimmed.startsWith("{")) {
    let doc: unknown;
    try {
      doc = JSON.parse(trimmed);
    } catch {
      // The position only: JSON.parse's message quotes the text around the fault, which may be a key.
      const at = text.length - text.trimStart().length + jsonFaultOffset(trimmed);
      throw new InventoryError(`not valid JSON (${lineAndColumn(text, at)})`);
    }
    entries = jsonEntries(doc);
  } else {
    entries = [];
    trimmed.split(/\r?\n/).forEach((line, i) => {
      const host = (line.split("#")[0] as string).trim();
      if (host !== "") entries.push({ where: `line ${i + 1}`, value: host, shared: FACTORY_APIKEYS });
    });
  }
  if (entries.length === 0) throw new InventoryError("lists no device");

  const devices: InventoryDevice[] = [];
  const seen = new Map<string, string>();
  for (const { where, value, shared } of entries) {
    const device = parseEntry(where, value, shared);
    // The scheme is left out: one port speaks one protocol, so "https://h:8443" and "h:8443" are one device.
    const identity = `${device.hostname.toLowerCase()}:${device.port}`;
    const earlier = seen.get(identity);
    if (earlier !== undefined) throw new InventoryError(`${where}: "${device.host}" is the same device as ${earlier}`);
    seen.set(identity, where);
    devices.push(device);
  }
  return devices;
}

function jsonEntries(doc: unknown): Array<{ where: string; value: unknown; shared: Pair }> {
  if (Array.isArray(doc)) return doc.map((value, i) => ({ where: `entry ${i}`, value, shared: FACTORY_APIKEYS }));
  const batch = doc as Record<string, unknown>;
  if (!Array.isArray(batch["hosts"])) throw new InventoryError('must be an array of devices, or an object with a "hosts" array');
  let shared = FACTORY_APIKEYS;
  if (batch["apikeys"] !== undefined) {
    if (!isPair(batch["apikeys"])) throw new InventoryError('"apikeys" must be {"rd": KEY, "wr": KEY}');
    shared = batch["apikeys"];
  }
  for (const name of Object.keys(batch)) {
    if (name !== "hosts" && name !== "apikeys") throw new InventoryError('has a member other than "hosts" and "apikeys"');
  }
  return (batch["hosts"] as unknown[]).map((value, i) => ({ where: `hosts[${i}]`, value, shared }));
}

function parseEntry(where: string, value: unknown, shared: Pair): InventoryDevice {
  let host: unknown = value;
  let apikeys: Pair = shared;
  // Member names and hosts that do not parse are never quoted: a key typed in the wrong place may be one.
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    const entry = value as Record<string, unknown>;
    for (const name of Object.keys(entry)) {
      if (name !== "host" && name !== "apikeys") throw new InventoryError(`${where}: has a member other than "host" and "apikeys"`);
    }
    host = entry["host"];
    if (entry["apikeys"] !== undefined) {
      if (!isPair(entry["apikeys"])) throw new InventoryError(`${where}: "apikeys" must be {"rd": KEY, "wr": KEY} with keys of at most 128 printable characters`);
      apikeys = Object.freeze({ rd: entry["apikeys"].rd, wr: entry["apikeys"].wr });
    }
  }
  if (typeof host !== "string") throw new InventoryError(`${where}: needs a "host" string`);
  const address = parseDeviceAddress(host.trim());
  if (address === undefined) throw new InventoryError(`${where}: the host is not HOST[:PORT] or https://HOST[:PORT] (no path)`);
  return Object.freeze({ host: host.trim(), scheme: address.scheme, hostname: address.hostname, port: address.port, apikeys });
}
