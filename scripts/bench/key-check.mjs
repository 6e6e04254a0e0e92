// The key check alone (docs/api.md §9): keyMatches on a plain slot (an unsealed device) and on a
// sealed one (SHA-256 of salt and key, then a 32-byte constant-time compare), right and wrong keys.
// `node scripts/bench/key-check.mjs [iterations]`; bundles src/access/keys.ts with esbuild first.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { build } from "esbuild";
import { ROOT } from "./lib.mjs";

const N = Number(process.argv[2] ?? 1_000_000);
const dir = mkdtempSync(join(tmpdir(), "apikeyd-keycheck-"));
try {
  const out = join(dir, "keys.mjs");
  await build({ entryPoints: [join(ROOT, "src", "access", "keys.ts")], bundle: true, platform: "node", format: "esm", outfile: out, logLevel: "error" });
  const { generateKey, keysOf, keyMatches, sealKey, sealSalt } = await import(pathToFileURL(out).href);
  const secret = Buffer.alloc(32, 7);
  const key = generateKey();
  const plain = keysOf(key, "").rdSlot;
  const sealed = keysOf(sealKey(key, secret), "", sealSalt(secret)).rdSlot;
  const time = (slot, presented) => {
    for (let i = 0; i < N / 10; i++) keyMatches(slot, presented);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < N; i++) keyMatches(slot, presented);
    return Number(process.hrtime.bigint() - t0) / N;
  };
  const rows = [];
  for (let round = 0; round < 5; round++) {
    rows.push({ plain: time(plain, key), sealed: time(sealed, key), sealedWrong: time(sealed, generateKey()) });
  }
  const med = (k) => rows.map((r) => r[k]).sort((a, b) => a - b)[2];
  console.log(`node ${process.version}, ${N} checks per round, median of 5 rounds (ns per check):`);
  console.log(`  unsealed (slot copy + timingSafeEqual):  ${med("plain").toFixed(0)}`);
  console.log(`  sealed, right key (SHA-256 + compare):   ${med("sealed").toFixed(0)}`);
  console.log(`  sealed, wrong key:                       ${med("sealedWrong").toFixed(0)}`);
  console.log(`  sealed − unsealed:                       ${(med("sealed") - med("plain")).toFixed(0)} ns`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
