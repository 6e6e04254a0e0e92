/**
 * `reset [--keys-only] [--yes]`: the explicit factory reset of docs/api.md §6. Every state file of a
 * configured endpoint is rewritten from its factory document (durably, one by one), or only
 * apikeys.json with --keys-only. The config folder is never touched; state files of endpoints no
 * longer configured are left alone.
 */

import { loadFactory } from "../../state/config-folder.ts";
import { APIKEYS_ENDPOINT } from "../../state/device.ts";
import { fileText } from "../../state/state-file.ts";
import { NODE_FS, writeFileDurably } from "../../state/store.ts";
import { removePreviousKeys } from "../../access/key-deadlines.ts";
import { CommandError, orRefuse, takeStateFolder, type CommandIo } from "./shared.ts";

/** Runs the reset after the technician's yes (or --yes). */
export async function reset(configDir: string, stateDir: string, flags: { keysOnly: boolean; yes: boolean }, io: CommandIo): Promise<number> {
  const { factory } = await orRefuse(loadFactory(configDir));
  const names = flags.keysOnly ? [APIKEYS_ENDPOINT] : [...factory.keys()];
  const what = flags.keysOnly
    ? `every key pair in ${stateDir}/${APIKEYS_ENDPOINT}.json back to the factory keys (other settings stay)`
    : `all state in ${stateDir} (keys, settings, saved outputs: ${names.length} files) back to the factory defaults`;
  if (!flags.yes) {
    // Refusals first: no point in asking for a yes that takeStateFolder would then turn down.
    (await takeStateFolder(stateDir, "reset")).release();
    if (io.confirm === undefined) throw new CommandError(`reset would set ${what}; standard input is not a terminal, so add --yes to confirm`);
    if (!(await io.confirm(`Reset ${what}? This cannot be undone.`))) {
      io.out("nothing changed");
      return 1;
    }
  }
  const lock = await takeStateFolder(stateDir, "reset");
  try {
    // The keys that grace periods and pending confirmations kept go with the keys they served. First:
    // a sealed previous.keys left beside the factory apikeys.json by a crash would have the next
    // start finish a sealing (load-device.ts); the other way round, a crash leaves only deadlines
    // without their keys, which the start clears.
    await removePreviousKeys(stateDir);
    for (const name of names) await writeFileDurably(NODE_FS, stateDir, `${name}.json`, fileText(factory.get(name)));
  } finally {
    lock.release();
  }
  io.log.log("warn", "factory reset", { event: "factory-reset", scope: flags.keysOnly ? "keys" : "all", state: stateDir });
  io.out(`reset ${names.length === 1 ? `${names[0]}.json` : `${names.length} files`} in ${stateDir} to the factory defaults; the factory keys are in the README (provision the device again)`);
  return 0;
}
