/**
 * The entry: the only place that reads argv and the environment, loads the folders, listens and
 * handles signals. Everything else is the library (`createServer`, `loadDevice`).
 */

import type * as http from "node:http";
import type { AddressInfo } from "node:net";
import { auditKeyringChanges, warnOpenEndpoints } from "./access/audit.ts";
import { runCommand } from "./cli/commands/run.ts";
import { processIo } from "./cli/commands/shared.ts";
import { ReloadError, StartupError, type Device } from "./state/device.ts";
import { loadDevice } from "./state/load-device.ts";
import { createLogger, type Logger } from "./common/log.ts";
import { UsageError } from "./cli/argv.ts";
import { helpText, parseOptions, type Options } from "./cli/options.ts";
import { createServer, stopServer } from "./http/server.ts";
import { lockStateFolder, LockedError, type StateLock } from "./state/state-lock.ts";
import { readTlsFiles, TlsFileError, tlsModule, type TlsFiles } from "./http/tls.ts";
import { mdnsWanted, startDiscovery, type Discovery } from "./discovery/service.ts";
import { IoBridge } from "./io/io-bridge.ts";

declare const APIKEYD_VERSION: string | undefined;
/** Set by the build from package.json. */
export const VERSION = typeof APIKEYD_VERSION === "string" ? APIKEYD_VERSION : "0.0.0-dev";

/** Takes the state folder for the server: an offline command changing it meanwhile would be lost. */
async function lockForServer(stateDir: string): Promise<StateLock> {
  try {
    return await lockStateFolder(stateDir, "serve");
  } catch (error) {
    if (error instanceof LockedError) throw new StartupError(`${error.message}; one process at a time may own it`);
    throw new StartupError(`state folder ${stateDir}: cannot be locked (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
}

async function readTls(options: Options): Promise<TlsFiles | undefined> {
  if (options.tlsCert === undefined || options.tlsKey === undefined) return undefined;
  try {
    return await readTlsFiles(options.tlsCert, options.tlsKey);
  } catch (error) {
    if (error instanceof TlsFileError) throw new StartupError(error.message);
    throw error;
  }
}

async function serve(options: Options, log: Logger): Promise<void> {
  const lock = await lockForServer(options.stateDir);
  let device: Device;
  let tlsFiles: TlsFiles | undefined;
  try {
    tlsFiles = await readTls(options);
    device = await loadDevice({
      configDir: options.configDir,
      stateDir: options.stateDir,
      warn: (message) => log.log("warn", message),
    });
  } catch (error) {
    lock.release();
    throw error;
  }
  for (const warning of tlsFiles?.warnings ?? []) log.log("warn", warning);
  const report = device.provisioningReport();
  warnOpenEndpoints(log, report.open);
  if (report.factoryKeys.length > 0) {
    log.log("warn", "endpoints still use factory keys; provision the device before it goes into the field", { endpoints: report.factoryKeys.join(",") });
  }

  // docs/io-driver.md: the driver is started before the server listens.
  const io = options.ioDriver === undefined ? undefined : new IoBridge(device, { argv: options.ioDriver, timeoutMs: options.ioTimeoutMs, log });
  io?.start();
  const server = createServer(device, { log, throttle: options.throttle, allowedHosts: options.allowedHosts, tls: tlsFiles, wwwDir: options.wwwDir, outputs: io, lastUseIntervalMs: options.lastUseIntervalMs });
  server.on("error", (error: NodeJS.ErrnoException) => {
    log.log("error", "cannot listen", { code: error.code, host: options.host, port: options.port });
    lock.release();
    process.exit(1);
  });

  let stopping = false;
  let discovery: Promise<Discovery | undefined> | undefined;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.log("info", "stopping", { signal });
    // The mDNS goodbye first: clients drop the device from their caches while it finishes.
    await (await discovery)?.stop();
    await stopServer(server);
    await io?.stop();
    await device.close(); // the pairs' last use written, every change on disk
    lock.release();
    log.log("info", "stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  // Reloads run one after another; a SIGHUP during a stop is ignored.
  let reloads = Promise.resolve();
  process.on("SIGHUP", () => {
    if (!stopping) reloads = reloads.then(() => reload(device, server, options, log));
  });

  server.listen(options.port, options.host, () => {
    const address = server.address() as AddressInfo;
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
    const scheme = tlsFiles === undefined ? "http" : "https";
    log.log("info", "listening", { url: `${scheme}://${host}:${address.port}`, version: VERSION, state: options.stateDir });
    if (mdnsWanted(options.mdns, address.address) && !stopping) {
      discovery = startDiscovery(device, { listenAddress: address.address, port: address.port, secure: tlsFiles !== undefined, interfaces: options.mdnsInterfaces, log });
    }
  });
}

/** SIGHUP: the state folder, and the TLS files, read again; whatever does not pass keeps the old. */
async function reload(device: Device, server: http.Server, options: Options, log: Logger): Promise<void> {
  const before = device.keyring;
  try {
    const changed = await device.reload();
    log.log("info", "reloaded the state folder", { changed: changed.length > 0 ? changed.join(",") : "nothing" });
    auditKeyringChanges({ log, secret: device.fingerprintSecret }, before, device.keyring, { source: "reload" });
  } catch (error) {
    if (!(error instanceof ReloadError)) {
      log.log("error", "reload failed", { detail: error instanceof Error ? error.message : String(error) });
    } else {
      for (const line of error.message.split("\n")) log.log("error", `reload refused: ${line}`);
      log.log("warn", "still serving the state loaded before; fix the files and send SIGHUP again");
    }
  }
  if (server instanceof tlsModule().Server) {
    try {
      const files = await readTls(options);
      if (files !== undefined) server.setSecureContext({ cert: files.cert, key: files.key });
      log.log("info", "reloaded the TLS certificate", { cert: options.tlsCert });
      for (const warning of files?.warnings ?? []) log.log("warn", warning);
    } catch (error) {
      log.log("error", `TLS reload refused: ${(error as Error).message}; the old certificate stays`);
    }
  }
}


async function main(argv: readonly string[]): Promise<number | undefined> {
  let options: Options;
  try {
    options = parseOptions(argv, process.env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`apikeyd: ${error.message}\nTry --help.\n`);
    return 2;
  }
  if (options.help) {
    process.stdout.write(helpText() + "\n");
    return 0;
  }
  if (options.version) {
    process.stdout.write(VERSION + "\n");
    return 0;
  }
  const log = createLogger(options.logFormat, undefined, { requests: options.logRequests });
  if (options.command.length > 0) return runCommand(options, processIo(log));
  try {
    await serve(options, log);
  } catch (error) {
    if (!(error instanceof StartupError)) throw error;
    for (const line of error.message.split("\n")) log.log("error", `cannot start: ${line}`);
    return 1;
  }
  return undefined;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`apikeyd: unexpected failure: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exitCode = 1;
  },
);
