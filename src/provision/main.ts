/**
 * The provisioning tool's entry: replaces every key pair of every device in an inventory with fresh
 * random keys, records them in the output file, and can be killed at any instant and run again.
 * Exit codes: 0 every device done, 1 some device failed, 2 nothing attempted (bad usage or files).
 */

import { lstat, readdir, readFile, unlink } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { parseArgv, UsageError, wholeNumber } from "../cli/argv.ts";
import type { PidLock } from "../common/pid-lock.ts";
import { printable } from "../common/printable.ts";
import { isTempFileName } from "../state/store.ts";
import { CaFileError, readCaFile } from "./ca-file.ts";
import { acquireLock, checkOutputFolder, LockError, UnsafeFileError } from "./files.ts";
import { InventoryError, parseInventory, type InventoryDevice } from "./inventory.ts";
import { Journal, JournalError, readJournal, type Intent } from "./journal.ts";
import { DEFAULT_DEVICE_THROTTLE, type DeviceThrottle } from "./pacing.ts";
import { Progress } from "./progress.ts";
import { DEFAULT_CONFIRM_S, provisionDevice, type ChangeSettings, type DeviceOutcome } from "./rotate.ts";
import { MAX_CONFIRM_S, MAX_GRACE_S, MIN_CONFIRM_S } from "../access/key-life.ts";
import { isValidExpires } from "../access/expires.ts";
import { isValidValue } from "../state/schema.ts";
import { readSecrets, SecretsFile, SecretsFileError } from "./secrets-file.ts";
import { runDiscover } from "./discover.ts";

const USAGE = `Usage: node dist/provision.js --inventory FILE --out FILE [options]
       node dist/provision.js --rotate --out FILE [--inventory FILE] [options]
       node dist/provision.js --discover [--timeout S] [--out FILE] [--ca FILE]

Gives every key pair of every device in FILE fresh random keys (the apikeys pair last), checks
each change, and records the new keys in the output file (merged, mode 0600). Safe to kill at any
instant: run it again with the same arguments to finish.

  --inventory FILE       the devices: a JSON array of {"host": "H[:PORT]", "apikeys": {"rd", "wr"}},
                         or of bare "H[:PORT]" strings, or plain text with one host per line
                         (bare hosts are taken to have the factory apikeys pair); a host written
                         https://H[:PORT] (port 443 unless given) is reached over HTTPS, any other
                         over plain HTTP (port 80 unless given)
  --out FILE             the output file, keyed by each host as written in the inventory;
                         its journal is FILE.journal, its lock FILE.lock. Its folder must not be
                         writable by others (unless sticky, like /tmp), and the files in it must
                         be yours alone: no symlinks, no other hard links, not writable by others
  --ca FILE              PEM certificates that HTTPS devices' certificates must chain to (a CA,
                         or the devices' own self-signed certificates), instead of Node's built-in
                         list of public CAs. Certificates are always checked, their name or IP too
  --concurrency N        devices worked on at once (default 4, at most 64)
  --confirm S            each change is sent with confirm=S (10 to 3600, default 120): the device
                         goes back to the old keys unless the tool's checks present the new ones
                         within S seconds, so a run killed mid-way leaves keys the journal knows
  --grace S              the replaced keys keep working S more seconds (0 to 604800, default 0)
  --label TEXT           the label of each pair rotated (0 to 64 characters)
  --expires DATE         "YYYY-MM-DD HH:MM:SS" (UTC): each pair rotated, except apikeys, expires then
  --seal                 seal each device once its keys are set, checked and recorded: it then
                         keeps digests only and shows no key again, so the output file is the
                         only place the keys exist (a lost key: apikeyd reset --keys-only on the device)
  --rotate               give fresh keys again to devices this tool provisioned before, their
                         current keys taken from the output file; without --inventory, every
                         device of the output file
  --dry-run              read the devices and say what would change; change nothing
  --device-throttle N/S  the devices block an address after N wrong keys in S seconds (default 10/60);
                         the tool stays under it when it tries stale keys after an interruption
  --timeout S            seconds to wait for each answer (default 10)
  --discover             find the devices of the LAN by mDNS/DNS-SD (_http._tcp, _https._tcp),
                         confirm each with GET /api/v1/device, and print an inventory of their
                         hosts (no keys), or write it to a new --out FILE; --timeout S is how
                         long to listen (default 5)
  --help                 this text

Exit status: 0 all devices done, 1 some device failed (named in the summary), 2 nothing was done.`;

const DEFAULT_CONCURRENCY = 4;
const MAX_CONCURRENCY = 64;
const DEFAULT_TIMEOUT_S = 10;

/** The command line, checked. */
interface Settings {
  /** Undefined only with --rotate: the devices are then those of the output file. */
  readonly inventory: string | undefined;
  readonly out: string;
  readonly rotate: boolean;
  readonly concurrency: number;
  readonly dryRun: boolean;
  readonly throttle: DeviceThrottle;
  readonly timeoutMs: number;
  readonly ca: string | undefined;
  readonly change: ChangeSettings;
  readonly seal: boolean;
}

/** --discover's command line. */
interface DiscoverSettings {
  readonly discover: true;
  readonly timeoutMs: number;
  readonly out: string | undefined;
  readonly ca: string | undefined;
}

const DEFAULT_DISCOVER_S = 5;

function parseSettings(argv: string[]): Settings | DiscoverSettings | "help" {
  const { values } = parseArgv(
    argv,
    {
      inventory: { type: "string" },
      out: { type: "string" },
      ca: { type: "string" },
      concurrency: { type: "string" },
      "dry-run": { type: "boolean" },
      "device-throttle": { type: "string" },
      timeout: { type: "string" },
      confirm: { type: "string" },
      grace: { type: "string" },
      label: { type: "string" },
      expires: { type: "string" },
      discover: { type: "boolean" },
      rotate: { type: "boolean" },
      seal: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    { positionals: false },
  );
  if (values["help"] === true) return "help";
  if (values["discover"] === true) {
    for (const other of ["inventory", "concurrency", "dry-run", "device-throttle", "rotate", "seal"]) {
      if (values[other] !== undefined) throw new UsageError(`--${other} does not go with --discover`);
    }
    if (values["out"] === "" || values["ca"] === "") throw new UsageError("--out and --ca take a FILE");
    return {
      discover: true,
      timeoutMs: optionalNumber(values["timeout"], DEFAULT_DISCOVER_S, "timeout", 1, 600) * 1000,
      out: typeof values["out"] === "string" ? values["out"] : undefined,
      ca: typeof values["ca"] === "string" ? values["ca"] : undefined,
    };
  }
  const inventory = values["inventory"];
  const out = values["out"];
  const rotate = values["rotate"] === true;
  // --rotate takes its devices and their keys from the output file; an inventory may narrow them.
  if (inventory === "" || (typeof inventory !== "string" && !rotate)) throw new UsageError("--inventory FILE is required (or --rotate, to rotate the devices of --out again)");
  if (typeof out !== "string" || out === "") throw new UsageError("--out FILE is required");
  const concurrency = optionalNumber(values["concurrency"], DEFAULT_CONCURRENCY, "concurrency", 1, MAX_CONCURRENCY);
  const timeoutS = optionalNumber(values["timeout"], DEFAULT_TIMEOUT_S, "timeout", 1, 600);
  let throttle = DEFAULT_DEVICE_THROTTLE;
  const rawThrottle = values["device-throttle"];
  if (typeof rawThrottle === "string") {
    const match = /^(\d+)\/(\d+(?:\.\d+)?)$/.exec(rawThrottle);
    const maxFailures = Number(match?.[1]);
    const seconds = Number(match?.[2]);
    if (match === null || maxFailures < 2 || seconds <= 0) throw new UsageError("--device-throttle takes N/S: N (2 or more) wrong keys in S seconds");
    throttle = { maxFailures, windowMs: seconds * 1000 };
  }
  const ca = values["ca"];
  if (ca === "") throw new UsageError("--ca takes a FILE");
  const label = values["label"];
  const expires = values["expires"];
  if (typeof label === "string" && !isValidValue({ kind: "label" }, label)) throw new UsageError("--label takes 0 to 64 characters, no control characters");
  if (typeof expires === "string" && !isValidExpires(expires)) throw new UsageError('--expires takes a real date and time in UTC, "YYYY-MM-DD HH:MM:SS"');
  const change: ChangeSettings = {
    confirmS: optionalNumber(values["confirm"], DEFAULT_CONFIRM_S, "confirm", MIN_CONFIRM_S, MAX_CONFIRM_S),
    graceS: optionalNumber(values["grace"], 0, "grace", 0, MAX_GRACE_S),
    ...(typeof label === "string" ? { label } : {}),
    ...(typeof expires === "string" ? { expires } : {}),
  };
  return {
    inventory: typeof inventory === "string" ? inventory : undefined,
    out,
    rotate,
    concurrency,
    dryRun: values["dry-run"] === true,
    throttle,
    timeoutMs: timeoutS * 1000,
    ca: typeof ca === "string" ? ca : undefined,
    change,
    seal: values["seal"] === true,
  };
}


function optionalNumber(raw: string | boolean | undefined, fallback: number, option: string, min: number, max: number): number {
  return typeof raw === "string" ? wholeNumber(option, raw, min, max) : fallback;
}

/** One line on how a device ended. */
function describe(outcome: DeviceOutcome): string {
  switch (outcome.status) {
    case "done": {
      const text = outcome.changed.length === 0 ? "already provisioned, nothing changed" : `done, ${outcome.changed.length} pairs changed (${outcome.changed.join(", ")})`;
      return outcome.sealedNow === true ? `${text.replace("nothing changed", "keys unchanged")}; sealed` : text;
    }
    case "planned": {
      const parts: string[] = [];
      if (outcome.rotate.length > 0) parts.push(`would give ${outcome.rotate.length} pairs new keys (${outcome.rotate.join(", ")})`);
      if (outcome.confirm.length > 0) parts.push(`would check and record ${outcome.confirm.length} interrupted changes (${outcome.confirm.join(", ")})`);
      if (outcome.seal === true) parts.push("would seal it");
      return parts.length === 0 ? "already provisioned, nothing would change" : parts.join("; ");
    }
    case "failed":
      return `FAILED: ${outcome.reason}` + (outcome.changed.length > 0 ? ` (${outcome.changed.length} pairs changed and recorded before that)` : "");
  }
}

/** Runs `work` over `items`, at most `limit` at once. */
async function pool<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

async function run(settings: Settings): Promise<number> {
  const outPath = resolve(settings.out);
  const devices = settings.inventory !== undefined ? await readInventory(settings.inventory) : await devicesOfOutput(outPath);
  const ca = settings.ca === undefined ? undefined : await readCaFile(settings.ca);
  if (ca !== undefined && !devices.some((d) => d.scheme === "https")) {
    process.stderr.write("warning: --ca is given, but no device in the inventory is written https://...; all are reached over plain HTTP\n");
  }
  // Keys go only into a folder where nobody else can swap the files (files.ts explains).
  await checkOutputFolder(dirname(outPath));
  if (settings.seal && !settings.dryRun) {
    // Said before anything is sent: after this run, nothing but that file knows the keys.
    process.stderr.write(
      `--seal: each device is sealed once its keys are set and checked, and never shows a key again: ${printable(outPath)} (and its journal, until the run finishes) ` +
        "will be the only place the keys exist. Keep it safe and keep an encrypted backup; a device whose keys are lost can only be reset offline (apikeyd reset --keys-only).\n",
    );
  }
  let lock: PidLock | undefined;
  const tally = { done: 0, failed: 0, total: devices.length };
  if (!settings.dryRun) {
    lock = acquireLock(`${outPath}.lock`);
    // A kill needs no cleanup (that is the point of the journal), but a Ctrl-C should not leave
    // the lock behind for the next run to puzzle over, nor the user wondering what was done.
    const held = lock;
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      process.once(signal, () => {
        process.stderr.write(`\n${interrupted(tally)}\n`);
        held.release();
        process.exit(signal === "SIGINT" ? 130 : 143);
      });
    }
  }
  let journal: Journal | undefined;
  try {
    if (!settings.dryRun) await removeStaleTempFiles(outPath);
    const { hosts, mode } = await readSecrets(outPath, !settings.dryRun);
    const secrets = new SecretsFile(outPath, hosts);
    if (mode !== undefined && (mode & 0o077) !== 0) {
      if (settings.dryRun) {
        process.stderr.write(`warning: ${printable(outPath)} is readable by others (mode ${mode.toString(8)}); it holds keys and should be 0600\n`);
      } else {
        process.stderr.write(`warning: ${printable(outPath)} was readable by others (mode ${mode.toString(8)}); now 0600\n`);
      }
    }
    const contents = await readJournal(`${outPath}.journal`);
    journal = new Journal(`${outPath}.journal`, contents);
    const byHost = new Map<string, Intent[]>();
    for (const intent of contents.intents) byHost.set(intent.host, [...(byHost.get(intent.host) ?? []), intent]);
    const listed = new Set(devices.map((d) => d.host));
    const orphans = [...byHost.keys()].filter((h) => !listed.has(h));
    if (orphans.length > 0) {
      process.stderr.write(`warning: the journal holds unfinished changes for hosts not in this inventory (${printable(orphans.join(", "))}); they stay in it until a run that lists them finishes\n`);
    }

    const progress = new Progress(process.stderr, devices.length);
    const taken = new Set<string>();
    const openJournal = journal;
    const outcomes = await pool(devices, settings.concurrency, async (device: InventoryDevice) => {
      const outcome = await provisionDevice(
        { device, recorded: secrets.get(device.host), intents: byHost.get(device.host) ?? [] },
        {
          dryRun: settings.dryRun,
          rotate: settings.rotate,
          timeoutMs: settings.timeoutMs,
          throttle: settings.throttle,
          ca,
          journal: (intent) => openJournal.append(intent),
          record: (host, keys, complete) => secrets.record(host, keys, complete),
          event: (host, message) => progress.event(host, message),
          taken,
          change: settings.change,
          seal: settings.seal,
        },
      );
      progress.finish(device.host, describe(outcome), outcome.status === "failed");
      if (outcome.status === "failed") tally.failed++;
      else tally.done++;
      return { device, outcome };
    });
    progress.close();

    if (!settings.dryRun) {
      // Journal lines of a finished device are resolved: its keys are in the output file. Those of
      // a failed device stay for the next run.
      const finished = new Set(outcomes.filter((o) => o.outcome.status === "done").map((o) => o.device.host));
      const unresolved = journal.intents.filter((i) => !finished.has(i.host));
      if (unresolved.length !== journal.intents.length || unresolved.length === 0) await journal.rewrite(unresolved);
    }
    // An output file from an earlier run holds keys too; one this run never wrote, and that did not exist, is not named.
    return summarize(settings, outPath, secrets.written || mode !== undefined, outcomes);
  } finally {
    await journal?.close();
    lock?.release();
  }
}

async function readInventory(path: string): Promise<InventoryDevice[]> {
  const text = await readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
    throw new InventoryError(error.code === "ENOENT" ? "no such file" : error.message);
  });
  return parseInventory(text);
}

/**
 * --rotate without --inventory: every host of the output file, as written there. Their current
 * keys are the file's (rotate.ts tries them first), so no inventory has to be made by hand.
 */
async function devicesOfOutput(outPath: string): Promise<InventoryDevice[]> {
  const { hosts } = await readSecrets(outPath);
  if (hosts.size === 0) throw new SecretsFileError(`${outPath} holds no device to rotate again; give an --inventory for a first run`);
  return parseInventory(JSON.stringify([...hosts.keys()]));
}

/**
 * Removes temporary copies of the output file and the journal left by a killed run: the rename
 * never happened, so the files they were meant to replace still hold everything, and they hold keys.
 * Their names are writeFileDurably's (`.<name>.<pid>-<n>.tmp`), <name> being the output file's or the journal's.
 * Only our own files go: in a shared (sticky) folder, other users' files are theirs. The lock's
 * temporary files (`.<name>.lock.*`) are left to the run that is taking the lock.
 */
async function removeStaleTempFiles(outPath: string): Promise<void> {
  const prefix = `.${basename(outPath)}.`;
  const uid = process.geteuid?.();
  for (const name of await readdir(dirname(outPath))) {
    if (!name.startsWith(prefix) || name.startsWith(`${prefix}lock.`) || !isTempFileName(name)) continue;
    const path = join(dirname(outPath), name);
    const st = await lstat(path).catch(() => undefined);
    if (st !== undefined && (uid === undefined || st.uid === uid)) await unlink(path).catch(() => undefined);
  }
}

/** What an interrupted run did, and what finishes it (a re-run: the journal knows the changes under way). */
function interrupted(tally: { done: number; failed: number; total: number }): string {
  const left = tally.total - tally.done - tally.failed;
  return (
    `Interrupted: ${tally.done} of ${tally.total} devices done, ${tally.failed} failed, ${left} not finished. ` +
    "Keys already changed are in the output file or its journal; run again with the same arguments to finish."
  );
}

/** The end of a run: what happened to each device, and where the keys are (only if they were written). */
function summarize(settings: Settings, outPath: string, written: boolean, outcomes: ReadonlyArray<{ device: InventoryDevice; outcome: DeviceOutcome }>): number {
  const failed = outcomes.filter((o) => o.outcome.status === "failed");
  const lines: string[] = [];
  const count = (n: number, what: string): string => `${n} ${what}${n === 1 ? "" : "s"}`;
  if (settings.dryRun) {
    const planned = outcomes.filter((o) => o.outcome.status === "planned" && (o.outcome.rotate.length > 0 || o.outcome.confirm.length > 0));
    const pairs = planned.reduce((n, o) => n + (o.outcome.status === "planned" ? o.outcome.rotate.length : 0), 0);
    lines.push(
      `Dry run, nothing was changed. ${count(outcomes.length, "device")}: ${planned.length} would change (${count(pairs, "pair")} to get new keys), ` +
        `${outcomes.length - planned.length - failed.length} already provisioned, ${failed.length} failed.`,
    );
  } else {
    const done = outcomes.filter((o) => o.outcome.status === "done");
    const changed = done.filter((o) => o.outcome.status === "done" && o.outcome.changed.length > 0);
    const pairs = outcomes.reduce((n, o) => n + (o.outcome.status === "planned" ? 0 : o.outcome.changed.length), 0);
    lines.push(
      `${count(outcomes.length, "device")}: ${changed.length} provisioned now, ${done.length - changed.length} already provisioned, ` +
        `${failed.length} failed; ${count(pairs, "pair")} got new keys.`,
    );
  }
  if (failed.length > 0) {
    const others = failed.length < outcomes.length ? "the other devices were done; " : "";
    lines.push(`Failed (${others}run again with the same arguments to retry these):`);
    for (const { device, outcome } of failed) lines.push(`  ${device.host}: ${outcome.status === "failed" ? outcome.reason : ""}`);
  }
  if (!settings.dryRun && written) lines.push(`Keys: ${outPath} (mode 0600). It is the only copy of them: keep it safe, keep a backup.`);
  else if (!settings.dryRun) lines.push("No keys were changed, so no output file was written.");
  // Pair names and reasons may hold what a device sent: no control character reaches the terminal.
  process.stdout.write(lines.map(printable).join("\n") + "\n");
  return failed.length > 0 ? 1 : 0;
}

async function main(): Promise<number> {
  let settings: Settings | DiscoverSettings | "help";
  try {
    settings = parseSettings(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`provision: ${(error as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  if (settings === "help") {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  if ("discover" in settings) {
    try {
      const ca = settings.ca === undefined ? undefined : await readCaFile(settings.ca);
      return await runDiscover({ timeoutMs: settings.timeoutMs, out: settings.out, ca }, process.stdout, process.stderr);
    } catch (error) {
      process.stderr.write(`provision: ${printable((error as Error).message)}\n`);
      return 2;
    }
  }
  try {
    return await run(settings);
  } catch (error) {
    if (error instanceof InventoryError) process.stderr.write(`provision: inventory ${printable(settings.inventory ?? settings.out)}: ${printable(error.message)}\n`);
    else if (error instanceof LockError || error instanceof UnsafeFileError || error instanceof SecretsFileError || error instanceof JournalError || error instanceof CaFileError) {
      process.stderr.write(`provision: ${printable(error.message)}\n`);
    } else process.stderr.write(`provision: ${printable((error as Error).message)}\n`);
    return 2;
  }
}

void main().then((code) => {
  process.exitCode = code;
});
