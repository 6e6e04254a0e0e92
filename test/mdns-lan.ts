/**
 * A test LAN of two network namespaces joined by a veth pair, so that the mDNS tests multicast on
 * UDP 5353 without touching the host's networks: the "device" side (10.77.0.1, fd77::1) runs the
 * servers, the "peer" side (10.77.0.2, fd77::2) runs the independent mDNS implementation
 * (test/mdns-peer.mjs) and the provisioning tool. Needs root and iproute2 (`ip`); .ci/run installs it.
 */

import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { ROOT_DIR } from "./helpers.ts";

export const DEVICE_IP = "10.77.0.1";
export const PEER_IP = "10.77.0.2";

/** Whether namespaces can be made here: root and the `ip` tool. */
export function canMakeNamespaces(): boolean {
  if (process.getuid?.() !== 0) return false;
  return spawnSync("ip", ["netns", "list"], { stdio: "ignore" }).status === 0;
}

let counter = 0;

export interface Lan {
  readonly device: string;
  readonly peer: string;
  /** A command inside a namespace (`ip netns exec NS ...`). */
  spawnIn(ns: string, command: string, args: readonly string[], env?: NodeJS.ProcessEnv): ChildProcessWithoutNullStreams;
  remove(): void;
}

function ip(args: readonly string[]): void {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr.trim()}`);
}

/** Makes the two namespaces and the link between them. */
export function createLan(): Lan {
  const tag = `${process.pid}-${++counter}`;
  const device = `akd-dev-${tag}`;
  const peer = `akd-peer-${tag}`;
  const remove = (): void => {
    for (const ns of [device, peer]) spawnSync("ip", ["netns", "delete", ns], { stdio: "ignore" });
  };
  try {
    for (const [ns, address] of [
      [device, 1],
      [peer, 2],
    ] as const) {
      ip(["netns", "add", ns]);
      // No duplicate address detection: addresses are usable at once.
      for (const conf of ["all", "default"]) spawnSync("ip", ["netns", "exec", ns, "sysctl", "-qw", `net.ipv6.conf.${conf}.accept_dad=0`], { stdio: "ignore" });
      ip(["-n", ns, "link", "set", "lo", "up"]);
      void address;
    }
    ip(["-n", device, "link", "add", "lan0", "type", "veth", "peer", "name", "lan0", "netns", peer]);
    for (const [ns, n] of [
      [device, 1],
      [peer, 2],
    ] as const) {
      ip(["-n", ns, "addr", "add", `10.77.0.${n}/24`, "dev", "lan0"]);
      ip(["-n", ns, "addr", "add", `fd77::${n}/64`, "dev", "lan0", "nodad"]);
      ip(["-n", ns, "link", "set", "lan0", "up"]);
    }
  } catch (error) {
    remove();
    throw error;
  }
  return {
    device,
    peer,
    spawnIn: (ns, command, args, env) => spawn("ip", ["netns", "exec", ns, command, ...args], { env: { ...process.env, ...env }, stdio: "pipe" }),
    remove,
  };
}

/** JSON lines of a child's stdout (or stderr), kept, with a way to wait for one. */
export class Lines<T = Record<string, unknown>> {
  readonly all: T[] = [];
  readonly text: string[] = [];
  #waiters: Array<() => void> = [];

  constructor(stream: NodeJS.ReadableStream) {
    createInterface({ input: stream }).on("line", (line) => {
      this.text.push(line);
      try {
        this.all.push(JSON.parse(line) as T);
      } catch {
        // not JSON: kept in text
      }
      for (const w of this.#waiters) w();
    });
  }

  /** Resolves with the first line (from `from` on) that `test` accepts; rejects after `ms`. */
  async waitFor(test: (line: T) => boolean, ms = 5000, from = 0): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.all.slice(from).find(test);
      if (found !== undefined) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no such line within ${ms} ms; lines so far:\n${this.text.slice(-30).join("\n")}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
      this.#waiters = [];
    }
  }
}

export const PEER_SCRIPT = join(ROOT_DIR, "test", "mdns-peer.mjs");
export const SERVER_BUNDLE = join(ROOT_DIR, "dist", "apikeyd.js");
export const PROVISION_BUNDLE = join(ROOT_DIR, "dist", "provision.js");
