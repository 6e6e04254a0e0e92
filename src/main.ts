/**
 * The entry: the only place that reads argv and the environment, loads the folders, listens and
 * handles signals. Everything else is the library (`createServer`, `loadDevice`).
 */

import type { AddressInfo } from "node:net";
import { loadDevice, StartupError } from "./device.ts";
import { createLogger, type Logger } from "./log.ts";
import { helpText, parseOptions, UsageError, type Options } from "./options.ts";
import { createServer, stopServer } from "./server.ts";

declare const APIKEYD_VERSION: string | undefined;
/** Set by the build from package.json. */
export const VERSION = typeof APIKEYD_VERSION === "string" ? APIKEYD_VERSION : "0.0.0-dev";

async function serve(options: Options, log: Logger): Promise<void> {
  const device = await loadDevice({
    configDir: options.configDir,
    stateDir: options.stateDir,
    warn: (message) => log.log("warn", message),
  });
  const report = device.provisioningReport();
  if (report.open.length > 0) {
    log.log("warn", "endpoints open to anyone (an empty key); acceptable only before provisioning", { endpoints: report.open.join(",") });
  }
  if (report.factoryKeys.length > 0) {
    log.log("warn", "endpoints still use factory keys; provision the device before it goes into the field", { endpoints: report.factoryKeys.join(",") });
  }

  const server = createServer(device, { log, throttle: options.throttle, allowedHosts: options.allowedHosts });
  server.on("error", (error: NodeJS.ErrnoException) => {
    log.log("error", "cannot listen", { code: error.code, host: options.host, port: options.port });
    process.exit(1);
  });

  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.log("info", "stopping", { signal });
    await stopServer(server);
    await device.idle();
    log.log("info", "stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));

  server.listen(options.port, options.host, () => {
    const address = server.address() as AddressInfo;
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
    log.log("info", "listening", { url: `http://${host}:${address.port}`, version: VERSION, state: options.stateDir });
  });
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
  const log = createLogger(options.logFormat);
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
