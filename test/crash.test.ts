/**
 * Crash safety (docs/api.md §6), tested as it happens: the built server is killed with SIGKILL while
 * twelve clients write, then restarted on the same state folder. Every acknowledged value (or the
 * later one that was in flight) must be there, every state file must parse, and the temporary files
 * a crash leaves must be gone once the server is up again.
 *
 * The number of rounds is fixed: `npm test` runs 10, `npm run soak` (APIKEYD_SOAK=1) 1000, and
 * APIKEYD_CRASH_ROUNDS=<n> any other number. A run completes its rounds or fails: a round that does
 * not end within ROUND_LIMIT_MS (a hang, not a slow machine) fails naming itself. Each round's kill
 * moment (after how many acknowledgments, then how many milliseconds) comes from a generator seeded
 * from the run's seed and the round's number. The seed is random and printed on failure;
 * APIKEYD_CRASH_SEED=<seed> replays a run's choices.
 */

import { execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inspectStateFolder, newRecords, readMember, runClient, startChild, type Child } from "./crash-harness.ts";
import { deriveSeed, ROOT_DIR, seededRandom } from "./helpers.ts";

const SOAK = process.env["APIKEYD_SOAK"] === "1";
const ROUNDS = wholeNumber("APIKEYD_CRASH_ROUNDS", SOAK ? 1000 : 10);
if (ROUNDS < 1) throw new Error("APIKEYD_CRASH_ROUNDS=0: at least one round");
/** A round (clients until the kill, restart, reads) takes well under a second; this only catches a hang. */
const ROUND_LIMIT_MS = 30_000;
const SEED = wholeNumber("APIKEYD_CRASH_SEED", Math.floor(Math.random() * 2 ** 31));

function wholeNumber(name: string, otherwise: number): number {
  const text = process.env[name];
  if (text === undefined || text === "") return otherwise;
  if (!/^\d+$/.test(text)) throw new Error(`${name}=${text}: a whole number is expected`);
  return Number(text);
}

/** Rejects if `work` has not settled within ROUND_LIMIT_MS. */
async function withinLimit<T>(round: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`round ${round} did not end within ${ROUND_LIMIT_MS / 1000} s (a hang)`)), ROUND_LIMIT_MS);
  });
  try {
    return await Promise.race([work, limit]);
  } finally {
    clearTimeout(timer);
  }
}

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
    `keeps every acknowledged change (${ROUNDS} rounds${SOAK ? ", soak" : ""})`,
    async () => {
      const records = newRecords();
      const began = Date.now();
      const figures = { rounds: 0, acks: 0, inFlightKept: 0, tempsLeft: 0 };
      let round = 0;
      try {
        let child = await start();
        /** One round: clients write until the seeded kill, then a restart and every member read back. */
        async function oneRound(round: number): Promise<void> {
          const random = seededRandom(deriveSeed(SEED, round));
          const agent = new Agent();
          // Kill after a seeded number of acknowledgments (so a slow machine still gets there),
          // then after a seeded few milliseconds more: somewhere inside a write.
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

        for (round = 1; round <= ROUNDS; round++) {
          await withinLimit(round, oneRound(round));
        }

        // A clean stop at the end: SIGTERM exits 0.
        child.process.kill("SIGTERM");
        expect(await child.exited).toEqual({ code: 0, signal: null });
      } catch (error) {
        const message = `crash test failed in round ${round} with seed ${SEED} (replay: APIKEYD_CRASH_SEED=${SEED} APIKEYD_CRASH_ROUNDS=${round})`;
        console.error(message);
        throw new Error(`${message}: ${(error as Error).message}`, { cause: error });
      }
      expect(figures.rounds).toBe(ROUNDS);
      console.log(
        `crash test: seed ${SEED}, ${figures.rounds} rounds, ${figures.acks} acknowledged writes, ` +
          `${figures.inFlightKept} in-flight values found committed, ${figures.tempsLeft} temporary files left by kills (all cleaned), ` +
          `${Math.round((Date.now() - began) / 1000)} s`,
      );
    },
    // Only a backstop: each round has its own limit, which fails first and names the round.
    ROUNDS * ROUND_LIMIT_MS + 60_000,
  );
});
