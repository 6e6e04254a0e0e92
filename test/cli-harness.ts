/** The built bundle as users run it: commands with their output and exit code, servers with their log. */

import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { join } from "node:path";
import { CONFIG_DIR, ROOT_DIR } from "./helpers.ts";

export const BUNDLE = join(ROOT_DIR, "dist", "apikeyd.js");

/** What a command printed, and how it exited. */
export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `node dist/apikeyd.js ...args` with the repository's config folder unless args name one. */
export function runCli(args: readonly string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  const withConfig = args.includes("--config-dir") ? args : [...args, "--config-dir", CONFIG_DIR];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BUNDLE, ...withConfig], { env: { ...process.env, ...options.env }, stdio: "pipe" });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.input ?? "");
  });
}

/** A server started from the bundle on 127.0.0.1, port 0. */
export interface CliServer {
  readonly child: ChildProcessWithoutNullStreams;
  readonly origin: string;
  readonly port: number;
  /** Everything it wrote to stderr so far. */
  log(): string;
  /** Resolves once the log matches (bounded: rejects after `ms`). */
  waitForLog(pattern: RegExp, ms?: number): Promise<RegExpExecArray>;
  /** Sends the signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

const running = new Set<ChildProcessWithoutNullStreams>();

/** Kills every server still running (afterEach). */
export function killServers(): void {
  for (const child of running) child.kill("SIGKILL");
  running.clear();
}

/** Starts the bundle (with `env` added to the environment); resolves once it listens, rejects with its log if it exits first. */
export async function startCli(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<CliServer> {
  const withConfig = args.includes("--config-dir") ? args : [...args, "--config-dir", CONFIG_DIR];
  const child = spawn(process.execPath, [BUNDLE, "--host", "127.0.0.1", "--port", "0", ...withConfig], { stdio: "pipe", env: { ...process.env, ...env } });
  running.add(child);
  let log = "";
  const exited = new Promise<number | null>((resolve) =>
    child.on("exit", (code) => {
      running.delete(child);
      resolve(code);
    }),
  );
  child.stderr.on("data", (c: Buffer) => (log += c.toString()));
  child.stdout.resume();
  const waitForLog = (pattern: RegExp, ms = 5_000): Promise<RegExpExecArray> =>
    new Promise((resolve, reject) => {
      const deadline = Date.now() + ms;
      const poll = (): void => {
        const m = pattern.exec(log);
        if (m !== null) return resolve(m);
        if (Date.now() > deadline || child.exitCode !== null) return reject(new Error(`no ${pattern} in the log:\n${log}`));
        setTimeout(poll, 20);
      };
      poll();
    });
  const m = await waitForLog(/listening(?: url=|","url":")(https?):\/\/127\.0\.0\.1:(\d+)/); // text or json
  const port = Number(m[2]);
  return {
    child,
    origin: `${m[1]}://127.0.0.1:${port}`,
    port,
    log: () => log,
    waitForLog,
    stop: (signal = "SIGTERM") => {
      child.kill(signal);
      return exited;
    },
  };
}
