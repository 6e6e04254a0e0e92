/** The command line and environment of docs/api.md §7, validated once and frozen. */

import { join } from "node:path";
import { parseArgv, UsageError, wholeNumber, type ArgSpec } from "./argv.ts";
import type { LogFormat } from "../common/log.ts";
import { DEFAULT_THROTTLE, type ThrottleOptions } from "../access/throttle.ts";
import { DEFAULT_LAST_USE_INTERVAL_S } from "../access/last-use.ts";
import { splitCommand } from "../io/protocol.ts";

/** Everything the entry needs to serve. */
export interface Options {
  readonly host: string | undefined;
  readonly port: number;
  readonly configDir: string;
  readonly stateDir: string;
  /** The homepage's web root (docs/homepage.md). */
  readonly wwwDir: string;
  readonly allowedHosts: readonly string[] | undefined;
  readonly logFormat: LogFormat;
  /** One log line per answered request (off by default; events are always logged). */
  readonly logRequests: boolean;
  readonly throttle: ThrottleOptions;
  /** Milliseconds between two writes of the pairs' last use. */
  readonly lastUseIntervalMs: number;
  readonly help: boolean;
  readonly version: boolean;
  /** PEM files of the HTTPS certificate and key; both or neither. */
  readonly tlsCert: string | undefined;
  readonly tlsKey: string | undefined;
  /** The I/O driver's program and arguments (docs/io-driver.md); undefined: no driver. */
  readonly ioDriver: readonly string[] | undefined;
  /** How long an output change waits for the driver's acknowledgement, in ms. */
  readonly ioTimeoutMs: number;
  /** The subcommand and its arguments (`keys set properties`); empty: serve. */
  readonly command: readonly string[];
  /** Flags of the subcommands (`keys set --rd=K --wr=K`, `reset --keys-only --yes`). */
  readonly rd: string | undefined;
  readonly wr: string | undefined;
  /** `keys set` flags of the life of a pair (docs/api.md §8), as typed. */
  readonly life: Readonly<Partial<Record<LifeFlag, string>>>;
  readonly keysOnly: boolean;
  readonly yes: boolean;
  /** mDNS/DNS-SD (docs/discovery.md): --mdns, --no-mdns; undefined: on unless listening on loopback. */
  readonly mdns: boolean | undefined;
  /** --mdns-interface: the interfaces to advertise on; undefined: every non-loopback one. */
  readonly mdnsInterfaces: readonly string[] | undefined;
}


/** Flag name, environment variable, and what --help says of it. */
const FLAGS = {
  host: { env: "APIKEYD_HOST", help: "address to listen on (default: every interface)" },
  port: { env: "APIKEYD_PORT", help: "TCP port, 0 for any free one (default: 8080)" },
  "config-dir": { env: "APIKEYD_CONFIG_DIR", help: "factory defaults, never written (default: ./device-config)" },
  "state-dir": { env: "APIKEYD_STATE_DIR", help: "live state, one file per endpoint (default: ./var)" },
  "www-dir": { env: "APIKEYD_WWW_DIR", help: "the homepage's web root, never written (default: <config-dir>/www)" },
  "allowed-hosts": { env: "APIKEYD_ALLOWED_HOSTS", help: "comma-separated Host header values to accept, e.g. 192.168.15.100:8080 (default: any)" },
  "log-format": { env: "APIKEYD_LOG_FORMAT", help: "text or json (default: text)" },
  "log-requests": { env: "APIKEYD_LOG_REQUESTS", help: "also log one line per answered request (default: off; 1/true or 0/false)", boolean: true },
  "tls-cert": { env: "APIKEYD_TLS_CERT", help: "certificate chain, PEM: serve HTTPS (with --tls-key)" },
  "tls-key": { env: "APIKEYD_TLS_KEY", help: "private key of the certificate, PEM" },
  "throttle-attempts": { env: "APIKEYD_THROTTLE_ATTEMPTS", help: "wrong keys from one address that block it (default: 10)" },
  "throttle-window": { env: "APIKEYD_THROTTLE_WINDOW", help: "seconds in which those wrong keys count (default: 60)" },
  "throttle-block": { env: "APIKEYD_THROTTLE_BLOCK", help: "seconds of the first block, doubled per further offence within an hour (default: 30)" },
  "throttle-max-block": { env: "APIKEYD_THROTTLE_MAX_BLOCK", help: "longest block in seconds (default: 900)" },
  "last-use-interval": { env: "APIKEYD_LAST_USE_INTERVAL", help: "seconds between two writes of the pairs' lastUsed to disk (default: 600)" },
  "mdns-interface": { env: "APIKEYD_MDNS_INTERFACE", help: "comma-separated interfaces to advertise on with mDNS (default: every non-loopback one)" },
  "io-driver": { env: "APIKEYD_IO_DRIVER", help: 'I/O driver program and arguments, e.g. "node scripts/io/simulator.mjs" (default: none)' },
  "io-timeout": { env: "APIKEYD_IO_TIMEOUT", help: "ms an output change waits for the driver (default: 2000)" },
} as const satisfies Record<string, { env: string; help: string; boolean?: true }>;

/** The on/off flags of mDNS; the variable takes on/off (or true/false, 1/0, yes/no). */
const MDNS_HELP = [
  `  --mdns                 ${"APIKEYD_MDNS=on".padEnd(28)} answer to <name>-<mac>.local and advertise _http._tcp (default: on unless listening on loopback)`,
  `  --no-mdns              ${"APIKEYD_MDNS=off".padEnd(28)} no mDNS/DNS-SD at all`,
];

type FlagName = keyof typeof FLAGS;

/** The members of a pair's life that `keys set` takes as flags. */
export const LIFE_FLAGS = ["label", "enabled", "expires", "origins"] as const;
export type LifeFlag = (typeof LIFE_FLAGS)[number];

/** The text of --help. */
export function helpText(): string {
  const lines = [
    "Usage: node dist/apikeyd.js [options]            serve (the default)",
    "       node dist/apikeyd.js <command> [options]",
    "",
    "Serves the device's JSON documents under /api/v1/<endpoint>, each guarded by its key pair,",
    "and its homepage (every other path) from the web root.",
    "",
    "Commands (field service; they use --config-dir and --state-dir like the server):",
    "  keys show                              print every key pair of the state folder (the keys themselves)",
    "  keys set <pair> [--rd=KEY] [--wr=KEY]  change a pair offline (refused while the server runs)",
    "  keys set <pair> [--label=T] [--enabled=B] [--expires=D] [--origins=L]  its life, offline, every member",
    "  keys generate                          print a new random key (192 bits, header-safe)",
    "  keys fingerprint                       print the log fingerprint of each key read from standard input",
    "  reset [--keys-only] [--yes]            factory reset of the state (or of the keys alone)",
    "  check                                  check the config and state folders; exit 1 on any problem",
    "",
    "Options (each also settable through the environment variable shown):",
  ];
  for (const [name, { env, help }] of Object.entries(FLAGS)) {
    lines.push(`  --${name.padEnd(20)} ${env.padEnd(28)} ${help}`);
  }
  lines.push(...MDNS_HELP);
  lines.push("  --help                 print this text", "  --version              print the version", "");
  lines.push("Signals: SIGTERM and SIGINT stop cleanly (requests in flight are finished);");
  lines.push("SIGHUP reloads the state folder (and the TLS certificate) from disk.");
  return lines.join("\n");
}

/** Parses argv (without node and the script) and the environment; flags win over variables. */
export function parseOptions(argv: readonly string[], env: NodeJS.ProcessEnv): Options {
  const spec: ArgSpec = {
    ...Object.fromEntries(Object.entries(FLAGS).map(([k, f]) => [k, { type: "boolean" in f ? ("boolean" as const) : ("string" as const) }])),
    help: { type: "boolean", short: "h" },
    version: { type: "boolean" },
    rd: { type: "string" },
    wr: { type: "string" },
    ...Object.fromEntries(LIFE_FLAGS.map((f) => [f, { type: "string" as const }])),
    "keys-only": { type: "boolean" },
    yes: { type: "boolean", short: "y" },
    mdns: { type: "boolean" },
    "no-mdns": { type: "boolean" },
  };
  const parsed = parseArgv(argv, spec, { positionals: true, once: ["rd", "wr", ...LIFE_FLAGS] });
  const values = parsed.values;
  const get = (name: FlagName): string | undefined => {
    const v = values[name];
    if (typeof v === "string") return v;
    const fromEnv = env[FLAGS[name].env];
    return fromEnv === undefined || fromEnv === "" ? undefined : fromEnv;
  };
  const seconds = (name: FlagName, fallbackMs: number): number => {
    const v = get(name);
    return v === undefined ? fallbackMs : wholeNumber(name, v, 1, 86_400) * 1000;
  };
  const logFormat = get("log-format") ?? "text";
  const logRequests = values["log-requests"] === true || onOff(FLAGS["log-requests"].env, env[FLAGS["log-requests"].env]);
  if (logFormat !== "text" && logFormat !== "json") throw new UsageError(`--log-format must be text or json, not "${logFormat}"`);
  const portText = get("port");
  const hosts = get("allowed-hosts");
  const attempts = get("throttle-attempts");
  const tlsCert = get("tls-cert");
  const tlsKey = get("tls-key");
  if ((tlsCert === undefined) !== (tlsKey === undefined)) throw new UsageError("--tls-cert and --tls-key go together");
  const ioText = get("io-driver");
  let ioDriver: readonly string[] | undefined;
  if (ioText !== undefined) {
    try {
      ioDriver = Object.freeze(splitCommand(ioText));
    } catch (error) {
      throw new UsageError(`--io-driver: ${(error as Error).message}`);
    }
  }
  const ioTimeout = get("io-timeout");
  const command = Object.freeze([...parsed.positionals]);
  const commandFlag = (["rd", "wr", ...LIFE_FLAGS, "keys-only", "yes"] as const).find((f) => values[f] !== undefined);
  if (command.length === 0 && commandFlag !== undefined) throw new UsageError(`--${commandFlag} belongs to a command (keys set, reset)`);
  const mdnsInterfaces = get("mdns-interface")?.split(",").map((i) => i.trim()).filter((i) => i !== "");
  return Object.freeze({
    mdns: mdnsSetting(values["mdns"] === true, values["no-mdns"] === true, env["APIKEYD_MDNS"]),
    mdnsInterfaces: mdnsInterfaces === undefined || mdnsInterfaces.length === 0 ? undefined : Object.freeze(mdnsInterfaces),
    host: get("host"),
    port: portText === undefined ? 8080 : wholeNumber("port", portText, 0, 65535),
    configDir: get("config-dir") ?? "./device-config",
    stateDir: get("state-dir") ?? "./var",
    wwwDir: get("www-dir") ?? join(get("config-dir") ?? "./device-config", "www"),
    allowedHosts: hosts === undefined ? undefined : Object.freeze(hosts.split(",").map((h) => h.trim()).filter((h) => h !== "")),
    logFormat,
    logRequests,
    throttle: Object.freeze({
      ...DEFAULT_THROTTLE,
      maxFailures: attempts === undefined ? DEFAULT_THROTTLE.maxFailures : wholeNumber("throttle-attempts", attempts, 1, 1_000),
      windowMs: seconds("throttle-window", DEFAULT_THROTTLE.windowMs),
      blockMs: seconds("throttle-block", DEFAULT_THROTTLE.blockMs),
      maxBlockMs: seconds("throttle-max-block", DEFAULT_THROTTLE.maxBlockMs),
    }),
    lastUseIntervalMs: seconds("last-use-interval", DEFAULT_LAST_USE_INTERVAL_S * 1000),
    help: values["help"] === true,
    version: values["version"] === true,
    tlsCert,
    tlsKey,
    ioDriver,
    ioTimeoutMs: ioTimeout === undefined ? 2_000 : wholeNumber("io-timeout", ioTimeout, 100, 60_000),
    command,
    rd: typeof values["rd"] === "string" ? values["rd"] : undefined,
    wr: typeof values["wr"] === "string" ? values["wr"] : undefined,
    life: Object.freeze(Object.fromEntries(LIFE_FLAGS.filter((f) => typeof values[f] === "string").map((f) => [f, values[f] as string]))),
    keysOnly: values["keys-only"] === true,
    yes: values["yes"] === true,
  });
}

/** A boolean environment variable: unset or empty is off; anything but 1/true/yes/on or 0/false/no/off is refused. */
function onOff(variable: string, value: string | undefined): boolean {
  const v = (value ?? "").toLowerCase();
  if (v === "" || v === "0" || v === "false" || v === "no" || v === "off") return false;
  if (v === "1" || v === "true" || v === "yes" || v === "on") return true;
  throw new UsageError(`${variable} takes 1, true, yes, on, or 0, false, no, off`);
}

/** --mdns, --no-mdns (not both), else APIKEYD_MDNS, else undefined (the default rule). */
function mdnsSetting(on: boolean, off: boolean, env: string | undefined): boolean | undefined {
  if (on && off) throw new UsageError("--mdns and --no-mdns exclude each other");
  if (on || off) return on;
  if (env === undefined || env === "") return undefined;
  const value = env.trim().toLowerCase();
  if (["on", "true", "1", "yes"].includes(value)) return true;
  if (["off", "false", "0", "no"].includes(value)) return false;
  throw new UsageError("APIKEYD_MDNS must be on or off");
}
