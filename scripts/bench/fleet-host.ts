// Hosts many apikeyd devices in one process for the provisioning benchmark: each a real server
// (createServer, the server's default throttle and limits) on its own loopback port with its own
// state folder seeded from the factory. scripts/bench.mjs bundles this file with esbuild and runs
// a few of these processes, so that 100 devices do not need 100 node processes.
//
//   node fleet-host.js <count> <config-dir> <state-root>
//
// Prints one line, {"ports":[...]}, once every device listens; stops on SIGTERM.

import { mkdir } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { createServer, stopServer } from "../../src/http/server.ts";
import { loadDevice } from "../../src/state/load-device.ts";

const [countText, configDir, stateRoot] = process.argv.slice(2) as [string, string, string];
const servers = await Promise.all(
  Array.from({ length: Number(countText) }, async (_, i) => {
    const stateDir = join(stateRoot, `device-${i}`);
    await mkdir(stateDir, { recursive: true });
    const device = await loadDevice({ configDir, stateDir });
    const server = createServer(device);
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    return { server, device };
  }),
);
process.stdout.write(JSON.stringify({ ports: servers.map(({ server }) => (server.address() as AddressInfo).port) }) + "\n");
process.on("SIGTERM", () => {
  void Promise.all(servers.map(async ({ server, device }) => {
    await stopServer(server, 1_000);
    await device.idle();
  })).then(() => process.exit(0));
});
