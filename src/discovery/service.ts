/**
 * Discovery as the server runs it (docs/api.md §11, docs/discovery.md): the responder on UDP 5353
 * (IPv4 224.0.0.251 and IPv6 ff02::fb, node:dgram), fed from the device's committed documents and
 * the machine's interfaces. A failure here never stops the HTTP server: it is logged, and the
 * device simply is not advertised.
 */

import type * as dgram from "node:dgram";
import type * as os from "node:os";
import { loadBuiltin } from "../common/builtins.ts";
import type { Logger } from "../common/log.ts";
import { DEVICE_ENDPOINT, type Device } from "../state/device.ts";
import type { Json } from "../state/documents.ts";
import { readIdentity } from "./names.ts";
import { MDNS_PORT, Responder, type Link, type Transport } from "./responder.ts";

// node:dgram is loaded when mDNS starts, not at every start (`npm run bench`, start to listening).
const loadDgram = (): typeof dgram => loadBuiltin<typeof dgram>("node:dgram");

export const MDNS_GROUP_V4 = "224.0.0.251";
export const MDNS_GROUP_V6 = "ff02::fb";
/** How often the interfaces are looked at again (a DHCP lease, a cable plugged in). */
const LINK_REFRESH_MS = 10_000;

export interface DiscoveryOptions {
  /** The address the HTTP server is bound to (`server.address().address`). */
  readonly listenAddress: string;
  /** The HTTP server's port. */
  readonly port: number;
  readonly secure: boolean;
  /** --mdns-interface: interface names; undefined for every non-loopback one. */
  readonly interfaces: readonly string[] | undefined;
  readonly log: Logger;
  /** Internal (tests): another UDP port than 5353. */
  readonly mdnsPort?: number;
  /** Internal (tests): the interfaces as os.networkInterfaces() gives them. */
  readonly networkInterfaces?: () => NodeJS.Dict<os.NetworkInterfaceInfo[]>;
}

export interface Discovery {
  readonly responder: Responder;
  /** Sends the goodbye and closes the sockets. */
  stop(): Promise<void>;
}

/** Whether an address is a loopback one (127/8, ::1, "localhost"). */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const a = address.toLowerCase().replace(/^\[|\]$/g, "");
  return a === "localhost" || a === "::1" || /^(::ffff:)?127\./.test(a);
}

/** --mdns / --no-mdns, or else: on when the server listens on a non-loopback address. */
export function mdnsWanted(option: boolean | undefined, listenAddress: string): boolean {
  return option ?? !isLoopback(listenAddress);
}

/**
 * The interfaces to work on and what each advertises: every address of the interface when the
 * server listens on all of them (`::` both families, `0.0.0.0` IPv4 only), else the one address
 * it listens on. Without --mdns-interface: the non-loopback interfaces, or the loopback one when
 * the server listens there (and --mdns asked for it).
 */
export function linksFor(listenAddress: string, interfaces: readonly string[] | undefined, all: NodeJS.Dict<os.NetworkInterfaceInfo[]>): Link[] {
  const listen = listenAddress.replace(/^::ffff:(?=\d+\.)/i, "").split("%")[0] as string;
  const anyV4 = listen === "0.0.0.0" || listen === "::";
  const anyV6 = listen === "::";
  const links: Link[] = [];
  for (const [name, infos = []] of Object.entries(all).sort(([a], [b]) => a.localeCompare(b))) {
    if (interfaces !== undefined ? !interfaces.includes(name) : infos.every((i) => i.internal) && !infos.some((i) => i.address === listen)) continue;
    const v4 = infos.filter((i) => i.family === "IPv4" && (anyV4 || i.address === listen)).map((i) => i.address);
    const v6 = infos.filter((i) => i.family === "IPv6" && (anyV6 || i.address.split("%")[0] === listen)).map((i) => i.address.split("%")[0] as string);
    if (v4.length === 0 && v6.length === 0) continue;
    links.push({ name, v4, v6, nets: infos.map((i) => ({ address: i.address, netmask: i.netmask })) });
  }
  return links;
}

/** node:dgram sockets on port 5353, one per family, joined to the group on each interface. */
class DgramTransport implements Transport {
  readonly v4: dgram.Socket;
  readonly v6: dgram.Socket | undefined;
  /** Sends one after another: the outgoing interface is a socket option set just before each. */
  #queue: Promise<void> = Promise.resolve();
  #joined = new Set<string>();

  constructor(
    readonly port: number,
    withV6: boolean,
    readonly onPacket: (msg: Buffer, from: { address: string; port: number }) => void,
    readonly log: Logger,
  ) {
    this.v4 = loadDgram().createSocket({ type: "udp4", reuseAddr: true });
    this.v6 = withV6 ? loadDgram().createSocket({ type: "udp6", reuseAddr: true, ipv6Only: true }) : undefined;
    for (const socket of [this.v4, this.v6]) {
      socket?.on("message", (msg, rinfo) => {
        try {
          this.onPacket(msg, { address: rinfo.address, port: rinfo.port });
        } catch (error) {
          // A packet may cost its answer, never the server.
          this.log.log("warn", "mDNS: a packet could not be handled", { detail: error instanceof Error ? error.message : String(error) });
        }
      });
      socket?.on("error", (error: NodeJS.ErrnoException) => this.log.log("warn", "mDNS socket error", { code: error.code }));
    }
  }

  async bind(): Promise<void> {
    const bindOne = (socket: dgram.Socket, address: string): Promise<void> =>
      new Promise((resolve, reject) => {
        const onError = (error: Error): void => reject(error);
        socket.once("error", onError);
        socket.bind({ port: this.port, address, exclusive: false }, () => {
          socket.off("error", onError);
          socket.setMulticastTTL(255);
          socket.setMulticastLoopback(true);
          resolve();
        });
      });
    await bindOne(this.v4, "0.0.0.0");
    if (this.v6 !== undefined) await bindOne(this.v6, "::");
  }

  /** Joins the group on every interface not joined yet. */
  join(links: readonly Link[]): void {
    for (const link of links) {
      const v4 = link.nets.find((n) => !n.address.includes(":"))?.address;
      if (link.v4.length > 0 && v4 !== undefined) this.#joinOne(this.v4, MDNS_GROUP_V4, v4, link.name);
      if (link.v6.length > 0 && this.v6 !== undefined) this.#joinOne(this.v6, MDNS_GROUP_V6, `::%${link.name}`, link.name);
    }
  }

  #joinOne(socket: dgram.Socket, group: string, iface: string, name: string): void {
    const key = `${group}|${iface}`;
    if (this.#joined.has(key)) return;
    try {
      socket.addMembership(group, iface);
      this.#joined.add(key);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EADDRINUSE") this.#joined.add(key); // joined already (by this socket)
      else this.log.log("warn", "mDNS: cannot join the multicast group", { interface: name, group, code });
    }
  }

  multicast(link: Link, family: 4 | 6, packet: Buffer): Promise<void> {
    const socket = family === 4 ? this.v4 : this.v6;
    if (socket === undefined) return Promise.resolve();
    const iface = family === 4 ? link.nets.find((n) => !n.address.includes(":"))?.address : `::%${link.name}`;
    if (iface === undefined) return Promise.resolve();
    return this.#send(socket, packet, family === 4 ? MDNS_GROUP_V4 : MDNS_GROUP_V6, this.port, iface);
  }

  unicast(address: string, port: number, packet: Buffer): Promise<void> {
    const v6 = address.includes(":") && !/^::ffff:\d/i.test(address);
    const socket = v6 ? this.v6 : this.v4;
    if (socket === undefined) return Promise.resolve();
    return this.#send(socket, packet, v6 ? address : address.replace(/^::ffff:/i, ""), port, undefined);
  }

  #send(socket: dgram.Socket, packet: Buffer, address: string, port: number, iface: string | undefined): Promise<void> {
    const next = this.#queue.then(
      () =>
        new Promise<void>((resolve) => {
          try {
            if (iface !== undefined) socket.setMulticastInterface(iface);
            socket.send(packet, port, address, () => resolve());
          } catch {
            resolve(); // a closed socket or a vanished interface: the packet is lost, as UDP may lose it
          }
        }),
    );
    this.#queue = next;
    return next;
  }

  close(): void {
    for (const socket of [this.v4, this.v6]) {
      try {
        socket?.close();
      } catch {
        // closed already
      }
    }
  }
}

/**
 * Starts the responder for a listening server. Resolves to undefined (with a warning logged) when
 * UDP 5353 cannot be had; the server goes on without discovery.
 */
export async function startDiscovery(device: Device, options: DiscoveryOptions): Promise<Discovery | undefined> {
  const interfacesOf = options.networkInterfaces ?? loadBuiltin<typeof os>("node:os").networkInterfaces;
  const listen = options.listenAddress;
  const currentLinks = (): Link[] => linksFor(listen, options.interfaces, interfacesOf());
  const identity = (): ReturnType<typeof readIdentity> =>
    readIdentity(device.endpoints.get(DEVICE_ENDPOINT)?.docs.committed, device.endpoints.get("properties")?.docs.committed as Json | undefined);

  let links = currentLinks();
  let responder: Responder | undefined;
  const withV6 = listen.includes(":") && !/^::ffff:\d/i.test(listen);
  const transport = new DgramTransport(options.mdnsPort ?? MDNS_PORT, withV6, (msg, from) => responder?.receive(msg, from), options.log);
  try {
    await transport.bind();
  } catch (error) {
    transport.close();
    options.log.log("warn", "mDNS: cannot use UDP port 5353; the device is not advertised", { code: (error as NodeJS.ErrnoException).code });
    return undefined;
  }
  transport.join(links);
  responder = new Responder({
    identity: identity(),
    secure: options.secure,
    port: options.port,
    links,
    transport,
    log: (level, message, fields) => options.log.log(level, message, fields),
  });
  if (links.length === 0) {
    options.log.log("warn", "mDNS: no interface address to advertise yet; looking again every 10 s", { interfaces: options.interfaces?.join(",") });
  }
  const active = responder;
  const unsubscribe = device.onCommit((endpoint) => {
    if (endpoint === "properties" || endpoint === DEVICE_ENDPOINT) void active.update({ identity: identity() });
  });
  const refresh = setInterval(() => {
    const now = currentLinks();
    if (JSON.stringify(now) === JSON.stringify(links)) return;
    links = now;
    transport.join(links);
    void active.update({ links });
  }, LINK_REFRESH_MS);
  refresh.unref();
  active.start();
  return {
    responder: active,
    async stop() {
      clearInterval(refresh);
      unsubscribe();
      await active.stop();
      transport.close();
    },
  };
}
