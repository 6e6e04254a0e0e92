/**
 * Crash safety (docs/api.md §6), tested as it happens: the built server is killed with SIGKILL while
 * twelve clients write, then restarted on the same state folder. Every acknowledged value (or the
 * later one that was in flight) must be there, every state file must parse, and the temporary files
 * a crash leaves must be gone once the server is up again.
 *
 * `npm test` runs a few rounds; `npm run soak` (APIKEYD_SOAK=1) runs many more. The seed is random
 * and printed on failure; APIKEYD_CRASH_SEED=<seed> replays a run's choices.
 */

import { execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inspectStateFolder, newRecords, readMember, runClient, startChild, type Child } from "./crash-harness.ts";
import { ROOT_DIR, seededRandom } from "./helpers.ts";

const SOAK = process.env["APIKEYD_SOAK"] === "1";
/** Rounds, and a bound on the time they may take (the soak stops early rather than overrun). */
const ROUNDS = SOAK ? 1000 : 10;
const BUDGET_MS = SOAK ? 10 * 60_000 : 40_000;
const SEED = Number(process.env["APIKEYD_CRASH_SEED"] ?? Math.floor(Math.random() * 2 ** 31));

let stateDir = "";
const children = new Set<Child>();

beforeAll(async () => {
  // npm test has just built dist/; this catches a stale bundle when the file is run alone.
  execFileSync(process.execPath, ["scripts/build.mjs", "--if-needed"], { cwd: ROOT_DIR, stdio: "pipe" });
  stateDir = await mkdtemp(join(tmpdir(), "apikeyd-crash-"));
}, 60_000);

afterAll(async () => {
  for (const child of children) child.process.kill("SIGKILL");
  await Promise.all([...children].map((c) => c.exited));
  await rm(stateDir, { recursive: true, force: true });
});

async function start(): Promise<Child> {
  const child = await startChild(stateDir);
  children.add(child);
  void child.exited.then(() => children.delete(child));
  return child;
}

describe("power cut at a random moment (SIGKILL), restart", () => {
  it(
    `keeps every acknowledged change (${SOAK ? "soak" : `${ROUNDS} rounds`})`,
    async () => {
      const random = seededRandom(SEED);
      const records = newRecords();
      const began = Date.now();
      const figures = { rounds: 0, acks: 0, inFlightKept: 0, tempsLeft: 0 };
      let round = 0;
      try {
        let child = await start();
        for (round = 1; round <= ROUNDS && Date.now() - began < BUDGET_MS; round++) {
          const agent = new Agent();
          // Kill after a random number of acknowledgments (so a slow machine still gets there),
          // then after a random few milliseconds more: somewhere inside a write.
          const killAfter = 1 + Math.floor(random() * 60);
          const delayMs = Math.floor(random() * 8);
          let acks = 0;
          const state = {
            killed: false,
            onAck: () => {
              if (++acks !== killAfter) return;
              setTimeout(() => {
                state.killed = true;
                child.process.kill("SIGKILL");
              }, delayMs);
            },
          };
          await Promise.all(records.map((r) => runClient(r, child.origin, agent, round, state)));
          const exit = await child.exited;
          expect(exit.signal).toBe("SIGKILL");
          await agent.destroy();

          // What the crash left: every state file whole; maybe a temporary file.
          const crashed = await inspectStateFolder(stateDir);
          expect(crashed.unreadable, "state files that do not parse after the kill").toEqual([]);
          figures.tempsLeft += crashed.temps.length;

          child = await start();
          expect((await inspectStateFolder(stateDir)).temps, "temporary files left after the restart").toEqual([]);
          const reader = new Agent();
          for (const r of records) {
            const found = await readMember(child.origin, reader, r.slot);
            if (r.slot.volatile === true) {
              expect(found, `${r.slot.endpoint}/${r.slot.member} starts from its factory value`).toEqual(r.slot.initial);
            } else {
              const allowed = r.inFlight === undefined ? [r.acked] : [r.acked, r.inFlight];
              expect(allowed, `${r.slot.endpoint}/${r.slot.member}: acknowledged ${JSON.stringify(r.acked)}`).toContainEqual(found);
              if (r.inFlight !== undefined && found === r.inFlight && found !== r.acked) figures.inFlightKept++;
            }
            r.acked = found;
            r.inFlight = undefined;
          }
          await reader.close();
          figures.acks += acks;
          figures.rounds = round;
        }

        // A clean stop at the end: SIGTERM exits 0.
        child.process.kill("SIGTERM");
        expect(await child.exited).toEqual({ code: 0, signal: null });
      } catch (error) {
        const message = `crash test failed in round ${round} with seed ${SEED} (replay: APIKEYD_CRASH_SEED=${SEED})`;
        console.error(message);
        throw new Error(`${message}: ${(error as Error).message}`, { cause: error });
      }
      expect(figures.rounds).toBeGreaterThanOrEqual(SOAK ? 10 : ROUNDS);
      console.log(
        `crash test: seed ${SEED}, ${figures.rounds} rounds, ${figures.acks} acknowledged writes, ` +
          `${figures.inFlightKept} in-flight values found committed, ${figures.tempsLeft} temporary files left by kills (all cleaned), ` +
          `${Math.round((Date.now() - began) / 1000)} s`,
      );
    },
    SOAK ? BUDGET_MS + 120_000 : 60_000,
  );
});
