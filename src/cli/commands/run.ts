/** The field-service commands: `node dist/apikeyd.js <command> ...` instead of serving. */

import { nearest } from "../argv.ts";
import type { Options } from "../options.ts";
import { check } from "./check.ts";
import { keysFingerprint, keysGenerate, keysSet, keysShow } from "./keys.ts";
import { reset } from "./reset.ts";
import { CommandError, type CommandIo } from "./shared.ts";

/** Runs `options.command`; resolves to the exit code. Refusals are printed on stderr. */
export async function runCommand(options: Options, io: CommandIo): Promise<number> {
  try {
    return await dispatch(options, io);
  } catch (error) {
    if (!(error instanceof CommandError)) throw error;
    for (const line of error.message.split("\n")) io.err(`apikeyd: ${line}`);
    if (error.exitCode === 2) io.err("Try --help.");
    return error.exitCode;
  }
}

// What each command takes, as --help shows it. Refusals say this rather than repeat what was typed:
// `keys set data SECRETKEY` (the user forgot --rd=) must not print the key.
const USAGE = {
  "keys show": "keys show",
  "keys set": "keys set <pair> [--rd=KEY] [--wr=KEY]",
  "keys generate": "keys generate",
  "keys fingerprint": "keys fingerprint",
  reset: "reset [--keys-only] [--yes]",
  check: "check",
} as const;

function dispatch(options: Options, io: CommandIo): Promise<number> {
  const [command, sub, ...rest] = options.command;
  const expect = (name: keyof typeof USAGE, count: number, onlyFlags: ReadonlyArray<"rd" | "wr" | "keysOnly" | "yes">): void => {
    const extra = options.command.length - count;
    if (extra < 0) throw new CommandError(`${USAGE[name]}: missing <pair>`, 2);
    if (extra > 0) {
      const hint = name === "keys set" ? "; keys are given as --rd=KEY and --wr=KEY" : "";
      throw new CommandError(`${USAGE[name]}: ${extra === 1 ? "one argument" : `${extra} arguments`} too many${hint}`, 2);
    }
    for (const flag of ["rd", "wr", "keysOnly", "yes"] as const) {
      const given = flag === "keysOnly" || flag === "yes" ? options[flag] : options[flag] !== undefined;
      if (given && !onlyFlags.includes(flag)) throw new CommandError(`${USAGE[name]}: takes no --${flag === "keysOnly" ? "keys-only" : flag}`, 2);
    }
    const life = Object.keys(options.life)[0];
    if (life !== undefined && name !== "keys set") throw new CommandError(`${USAGE[name]}: takes no --${life}`, 2);
  };
  if (command === "keys" && sub === "show") {
    expect("keys show", 2, []);
    return keysShow(options.configDir, options.stateDir, io);
  }
  if (command === "keys" && sub === "set") {
    expect("keys set", 3, ["rd", "wr"]);
    return keysSet(options.configDir, options.stateDir, rest[0] as string, { rd: options.rd, wr: options.wr, ...options.life }, io);
  }
  if (command === "keys" && sub === "generate") {
    expect("keys generate", 2, []);
    return Promise.resolve(keysGenerate(io));
  }
  if (command === "keys" && sub === "fingerprint") {
    expect("keys fingerprint", 2, []);
    return keysFingerprint(options.stateDir, io);
  }
  if (command === "reset") {
    expect("reset", 1, ["keysOnly", "yes"]);
    return reset(options.configDir, options.stateDir, { keysOnly: options.keysOnly, yes: options.yes }, io);
  }
  if (command === "check") {
    expect("check", 1, []);
    const tls = options.tlsCert !== undefined && options.tlsKey !== undefined ? { cert: options.tlsCert, key: options.tlsKey } : undefined;
    return check(options.configDir, options.stateDir, tls, io);
  }
  // The nearest command is named, never what was typed (it may be a key).
  const typed = options.command.slice(0, command === "keys" ? 2 : 1).join(" ");
  const near = nearest(typed, Object.keys(USAGE));
  throw new CommandError(`unknown command${near === undefined ? "" : ` (did you mean ${near}?)`}; the commands are: ${Object.keys(USAGE).join(", ")}`, 2);
}
