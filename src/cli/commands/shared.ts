/** What the field-service commands share: their input and output, their refusals, and who may change a state folder. */

import { promises as fsp } from "node:fs";
import { StartupError } from "../../state/device.ts";
import type { Logger } from "../../common/log.ts";
import { lockStateFolder, LockedError, type StateLock } from "../../state/state-lock.ts";

/** Where a command talks: results on stdout, refusals on stderr, audit events through the logger. */
export interface CommandIo {
  out(line: string): void;
  err(line: string): void;
  readonly log: Logger;
  /** Asks a yes/no question on the terminal; undefined when standard input is not a terminal. */
  confirm: ((question: string) => Promise<boolean>) | undefined;
  /** All of standard input, as text (`keys fingerprint`: keys never go in argv, where ps shows them). */
  readInput?: () => Promise<string>;
}

/** The terminal of the process that runs the command. */
export function processIo(log: Logger): CommandIo {
  // `apikeyd keys show | head -3`: a reader that stops early is not a failure.
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code !== "EPIPE") throw error;
    process.exit(0);
  });
  return {
    out: (line) => process.stdout.write(line + "\n"),
    err: (line) => process.stderr.write(line + "\n"),
    log,
    confirm: process.stdin.isTTY ? askOnTerminal : undefined,
    readInput: async () => {
      if (process.stdin.isTTY) process.stderr.write("reading keys from standard input, one per line; end with Ctrl-D\n");
      const chunks: Buffer[] = [];
      for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks).toString("utf8");
    },
  };
}

async function askOnTerminal(question: string): Promise<boolean> {
  // Loaded here, not at the top: the server never asks, and every module costs its start-up.
  const { createInterface } = await import("node:readline");
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await new Promise<string>((resolve) => rl.question(`${question} [y/N] `, resolve));
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

/** A command that cannot do what was asked: the message says why, the entry exits with `exitCode`. */
export class CommandError extends Error {
  override name = "CommandError";
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** Turns a config folder that does not load into a CommandError listing every problem. */
export async function orRefuse<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (error) {
    if (error instanceof StartupError) throw new CommandError(error.message);
    throw error;
  }
}

/**
 * Takes the state folder for a command that changes it. Refused while the server runs (its next
 * write would undo the change) and when the folder belongs to another user (the files written
 * would be unreadable by the service).
 */
export async function takeStateFolder(stateDir: string, role: string): Promise<StateLock> {
  const uid = process.getuid?.();
  const owner = await fsp.stat(stateDir).then((s) => s.uid, () => undefined);
  if (uid !== undefined && owner !== undefined && owner !== uid) {
    throw new CommandError(
      `the state folder ${stateDir} belongs to user id ${owner}, not to you (${uid}): run the command as its owner, ` +
        `e.g. "sudo -u apikeyd ..." (the installed "apikeyd" command does this by itself)`,
    );
  }
  try {
    return await lockStateFolder(stateDir, role);
  } catch (error) {
    if (!(error instanceof LockedError)) throw error;
    const what = error.owner.role === "serve" ? "the server is running" : `"apikeyd ${error.owner.role}" is running`;
    throw new CommandError(
      `${error.message}: ${what}, and a change made now would be lost. ` +
        (error.owner.role === "serve" ? `Stop it first (sudo systemctl stop apikeyd), then run this again and start it.` : "Try again when it has finished."),
    );
  }
}
