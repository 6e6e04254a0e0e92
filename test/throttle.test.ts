// Key guessing slowed per client address (docs/api.md §5, error 12): the schedule of blocks, exact with an
// injected clock; then through the real server, with clients bound to other loopback addresses.

import { afterAll, afterEach, describe, expect, it } from "vitest";
import { parseOptions } from "../src/cli/options.ts";
import { DEFAULT_THROTTLE, Throttle, throttleKey, type ThrottleOptions } from "../src/access/throttle.ts";
import { call, cleanup, closeAgents, ok, startServer } from "./helpers.ts";
import { expectFailure, rawOnce } from "./raw-client.ts";

afterEach(cleanup);
afterAll(closeAgents);

const MINUTE = 60_000;

/** Records `n` wrong keys from `address` at `at`. */
function fail(throttle: Throttle, address: string, n: number, at: number): void {
  for (let i = 0; i < n; i++) throttle.recordFailure(address, at);
}

describe("the schedule (defaults: 10 wrong keys in 60 s block for 30 s, doubling within an hour, up to 15 min)", () => {
  it("the tenth wrong key within the window blocks for 30 s; the ninth does not", () => {
    const t = new Throttle();
    fail(t, "192.0.2.1", 9, 0);
    expect(t.blockedFor("192.0.2.1", 0)).toBe(0);
    t.recordFailure("192.0.2.1", 59_000);
    expect(t.blockedFor("192.0.2.1", 59_000)).toBe(30_000);
    expect(t.blockedFor("192.0.2.1", 89_000)).toBe(0);
  });

  it("the window slides: 10 wrong keys within any 60 s block, even across a fixed minute's edge", () => {
    const t = new Throttle();
    t.recordFailure("192.0.2.3", 0);
    fail(t, "192.0.2.3", 5, 59_900);
    expect(t.blockedFor("192.0.2.3", 59_900)).toBe(0);
    fail(t, "192.0.2.3", 5, 60_100); // 10 wrong keys within 0.2 s
    expect(t.blockedFor("192.0.2.3", 60_100)).toBe(30_000);
  });

  it("wrong keys spread wider than the window never block", () => {
    const t = new Throttle();
    for (let i = 0; i < 100; i++) t.recordFailure("192.0.2.2", i * 7_000); // about 9 per minute
    expect(t.blockedFor("192.0.2.2", 100 * 7_000)).toBe(0);
  });

  it("each further offence within an hour doubles the block, up to 15 minutes", () => {
    const t = new Throttle();
    const blocks: number[] = [];
    let now = 0;
    for (let offence = 0; offence < 8; offence++) {
      fail(t, "192.0.2.3", 10, now);
      const wait = t.blockedFor("192.0.2.3", now);
      blocks.push(wait / 1000);
      now += wait; // the client honours Retry-After, then guesses again at once
    }
    expect(blocks).toEqual([30, 60, 120, 240, 480, 900, 900, 900]);
  });

  it("an offence more than an hour after the last one starts again from 30 s", () => {
    const t = new Throttle();
    fail(t, "192.0.2.4", 10, 0);
    fail(t, "192.0.2.4", 10, MINUTE);
    expect(t.blockedFor("192.0.2.4", MINUTE)).toBe(60_000);
    const later = MINUTE + 60 * MINUTE + 1;
    fail(t, "192.0.2.4", 10, later);
    expect(t.blockedFor("192.0.2.4", later)).toBe(30_000);
  });

  it("uses the numbers it is given", () => {
    const t = new Throttle({ ...DEFAULT_THROTTLE, maxFailures: 2, windowMs: 1_000, blockMs: 5_000, maxBlockMs: 7_000 });
    fail(t, "192.0.2.5", 2, 0);
    expect(t.blockedFor("192.0.2.5", 0)).toBe(5_000);
    fail(t, "192.0.2.5", 2, 5_000);
    expect(t.blockedFor("192.0.2.5", 5_000)).toBe(7_000);
  });
});

describe("the table of addresses", () => {
  it("stays within maxAddresses under many addresses, forgetting the oldest unblocked ones first", () => {
    const t = new Throttle({ ...DEFAULT_THROTTLE, maxFailures: 2, maxAddresses: 100 });
    for (let i = 0; i < 10_000; i++) {
      t.recordFailure(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, 0);
      expect(t.size).toBeLessThanOrEqual(100);
    }
    expect(t.size).toBe(100);
    t.recordFailure("10.0.0.0", 0); // the first, forgotten: this is its first wrong key again
    expect(t.blockedFor("10.0.0.0", 0)).toBe(0);
    t.recordFailure("10.0.39.15", 0); // the last (9,999), remembered: its second wrong key blocks
    expect(t.blockedFor("10.0.39.15", 0)).toBe(30_000);
  });

  it("one wrong key from each of 10,000 other addresses does not erase a block (nor lend fresh guesses)", () => {
    const t = new Throttle();
    fail(t, "192.0.2.66", 10, 0);
    for (let i = 0; i < 10_000; i++) t.recordFailure(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, 1_000);
    expect(t.size).toBeLessThanOrEqual(DEFAULT_THROTTLE.maxAddresses);
    expect(t.blockedFor("192.0.2.66", 1_000)).toBe(29_000);
    // And its offence is remembered after the block: the next one doubles.
    fail(t, "192.0.2.66", 10, 40_000);
    expect(t.blockedFor("192.0.2.66", 40_000)).toBe(60_000);
  });

  it("keeps the doubling history of an offender for the hour it matters, over unblocked addresses", () => {
    const t = new Throttle({ ...DEFAULT_THROTTLE, maxFailures: 2, maxAddresses: 10 });
    fail(t, "192.0.2.70", 2, 0); // blocked 30 s
    for (let i = 0; i < 1_000; i++) t.recordFailure(`10.0.${i >> 8}.${i & 255}`, 60_000);
    fail(t, "192.0.2.70", 2, 30 * MINUTE);
    expect(t.blockedFor("192.0.2.70", 30 * MINUTE)).toBe(60_000);
    expect(t.size).toBeLessThanOrEqual(10);
  });

  it("forgets an offender once its block and its hour are over, making room", () => {
    const t = new Throttle({ ...DEFAULT_THROTTLE, maxFailures: 2, maxAddresses: 3 });
    for (const a of ["10.0.0.1", "10.0.0.2", "10.0.0.3"]) fail(t, a, 2, 0);
    const later = 60 * MINUTE + 1;
    t.recordFailure("10.0.0.4", later);
    t.recordFailure("10.0.0.5", later);
    t.recordFailure("10.0.0.4", later); // tracked on its own: its second wrong key blocks it alone
    expect(t.blockedFor("10.0.0.4", later)).toBe(30_000);
    expect(t.blockedFor("10.0.0.6", later)).toBe(0);
    fail(t, "10.0.0.1", 2, later); // a new offence more than an hour later: 30 s again
    expect(t.blockedFor("10.0.0.1", later)).toBe(30_000);
  });

  it("with every entry blocked, counts the addresses it cannot track together, and blocks them together", () => {
    const t = new Throttle({ ...DEFAULT_THROTTLE, maxFailures: 2, maxAddresses: 3 });
    for (const a of ["10.0.0.1", "10.0.0.2", "10.0.0.3"]) fail(t, a, 2, 0);
    t.recordFailure("10.0.1.1", 1_000);
    expect(t.size).toBe(3);
    expect(t.blockedFor("10.0.1.1", 1_000)).toBe(0);
    expect(t.blockedFor("10.0.0.1", 1_000)).toBe(29_000); // no block was given up to make room
    t.recordFailure("10.0.1.2", 1_000); // the second wrong key among the untracked: all of them wait
    expect(t.blockedFor("10.0.1.1", 1_000)).toBe(30_000);
    expect(t.blockedFor("10.0.1.99", 1_000)).toBe(30_000);
    expect(t.blockedFor("10.0.0.2", 1_000)).toBe(29_000);
    expect(t.size).toBe(3);
    // Once the blocks are over, an offender whose block ended makes room for a new address.
    t.recordFailure("10.0.2.1", 40_000);
    expect(t.size).toBe(3);
    t.recordFailure("10.0.2.1", 40_000);
    expect(t.blockedFor("10.0.2.1", 40_000)).toBe(30_000);
    expect(t.blockedFor("10.0.2.2", 40_000)).toBe(0);
  });

  it("a wrong key refreshes an address's place: it is forgotten after the others", () => {
    const t = new Throttle({ ...DEFAULT_THROTTLE, maxFailures: 2, maxAddresses: 3 });
    t.recordFailure("10.0.0.1", 0);
    t.recordFailure("10.0.0.2", 0);
    t.recordFailure("10.0.0.3", 0);
    t.recordFailure("10.0.0.1", 0); // blocks 10.0.0.1 and makes it the newest
    t.recordFailure("10.0.0.4", 0); // pushes out 10.0.0.2, the oldest
    expect(t.size).toBe(3);
    expect(t.blockedFor("10.0.0.1", 0)).toBe(30_000);
    t.recordFailure("10.0.0.2", 0); // its first wrong key was forgotten: this one is its first again
    expect(t.blockedFor("10.0.0.2", 0)).toBe(0);
  });

  it("keeps IPv4 as is (also mapped into IPv6) and IPv6 by its /64", () => {
    expect(throttleKey("192.0.2.7")).toBe("192.0.2.7");
    expect(throttleKey("::ffff:192.0.2.7")).toBe("192.0.2.7");
    expect(throttleKey("2001:db8:1:2::1")).toBe("2001:db8:1:2::/64");
    expect(throttleKey("2001:0DB8:0001:0002:ffff:ffff:ffff:fffe")).toBe("2001:db8:1:2::/64");
    expect(throttleKey("2001:db8::1")).toBe("2001:db8:0:0::/64");
    expect(throttleKey("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
    expect(throttleKey("::1")).toBe("0:0:0:0::/64");
    const t = new Throttle({ ...DEFAULT_THROTTLE, maxFailures: 2 });
    t.recordFailure("2001:db8:1:2::1", 0);
    t.recordFailure("2001:db8:1:2:aaaa::9", 0); // the same host, another address of its /64
    expect(t.blockedFor("2001:db8:1:2::77", 0)).toBe(30_000);
    expect(t.blockedFor("2001:db8:1:3::1", 0)).toBe(0);
  });
});

describe("the numbers are configurable (flags and environment)", () => {
  it("--throttle-attempts, -window, -block and -max-block (seconds)", () => {
    const options = parseOptions(["--throttle-attempts", "5", "--throttle-window", "30", "--throttle-block", "10", "--throttle-max-block", "120"], {});
    expect(options.throttle).toEqual({ ...DEFAULT_THROTTLE, maxFailures: 5, windowMs: 30_000, blockMs: 10_000, maxBlockMs: 120_000 });
    const fromEnv = parseOptions([], { APIKEYD_THROTTLE_ATTEMPTS: "3", APIKEYD_THROTTLE_BLOCK: "60" });
    expect(fromEnv.throttle).toEqual({ ...DEFAULT_THROTTLE, maxFailures: 3, blockMs: 60_000 });
    expect(parseOptions([], {}).throttle).toEqual(DEFAULT_THROTTLE);
  });
});

describe("through the server", () => {
  // A 3 s block, reached by 3 wrong keys; the tests that wait it out move the server's clock.
  const QUICK: ThrottleOptions = { ...DEFAULT_THROTTLE, maxFailures: 3, blockMs: 3_000, maxBlockMs: 6_000 };
  const GET_NAME = "/api/v1/properties/name";
  const NAME = ok("eNetMini1");

  it("answers 429 with Retry-After once an address guessed too often; after that many seconds it is served", async () => {
    // The server's clock is the test's: time moves when the test says so, nobody sleeps.
    let now = Date.UTC(2026, 10, 26, 12, 0, 0);
    const ts = await startServer({ server: { throttle: QUICK, clock: () => now } });
    const from = { localAddress: "127.0.0.41" };
    for (let i = 0; i < 3; i++) expectFailure(await call(ts, "GET", GET_NAME, { ...from, rd: `guess-${i}` }), 3);
    const blocked = await call(ts, "GET", GET_NAME, { ...from, rd: "rdKey1" });
    expectFailure(blocked, 12);
    const retryAfter = Number(blocked.headers["retry-after"]);
    expect(retryAfter).toBe(QUICK.blockMs / 1000);
    // Guesses while blocked are answered 429 without being checked, so they do not count either.
    for (let i = 0; i < 5; i++) expectFailure(await call(ts, "GET", GET_NAME, { ...from, rd: `more-${i}` }), 12);
    // Another source address is not affected, neither for right keys nor for wrong ones.
    expect((await call(ts, "GET", GET_NAME, { localAddress: "127.0.0.42", rd: "rdKey1" })).text).toBe(NAME);
    expectFailure(await call(ts, "GET", GET_NAME, { localAddress: "127.0.0.42", rd: "guess" }), 3);

    now += retryAfter * 1000 - 1;
    expectFailure(await call(ts, "GET", GET_NAME, { ...from, rd: "rdKey1" }), 12); // a millisecond early
    now += 1;
    expect((await call(ts, "GET", GET_NAME, { ...from, rd: "rdKey1" })).text).toBe(NAME);
  });

  it("right keys are never held up by an address's earlier wrong ones, and do not wipe them out", async () => {
    const ts = await startServer({ server: { throttle: { ...QUICK, blockMs: 60_000 } } });
    const from = { localAddress: "127.0.0.43" };
    for (let i = 0; i < 2; i++) expectFailure(await call(ts, "GET", GET_NAME, { ...from, rd: `guess-${i}` }), 3);
    for (let i = 0; i < 20; i++) expect((await call(ts, "GET", GET_NAME, { ...from, rd: "rdKey1" })).text).toBe(NAME);
    expectFailure(await call(ts, "GET", GET_NAME, { ...from, rd: "guess-2" }), 3);
    expectFailure(await call(ts, "GET", GET_NAME, { ...from, rd: "rdKey1" }), 12);
  });

  it("counts the socket's address, never a forwarded header; a missing key is no guess", async () => {
    const ts = await startServer({ server: { throttle: { ...QUICK, blockMs: 60_000 } } });
    const forwarded = (key: string): string =>
      `GET ${GET_NAME} HTTP/1.1\r\nHost: device\r\nApiRdKey: ${key}\r\nX-Forwarded-For: 127.0.0.46\r\nForwarded: for=127.0.0.46\r\nX-Real-IP: 127.0.0.46\r\n\r\n`;
    for (let i = 0; i < 3; i++) expectFailure(await rawOnce(ts.port, forwarded(`guess-${i}`), "127.0.0.45"), 3);
    expectFailure(await rawOnce(ts.port, forwarded("rdKey1"), "127.0.0.45"), 12);
    expect((await call(ts, "GET", GET_NAME, { localAddress: "127.0.0.46", rd: "rdKey1" })).text).toBe(NAME);
    for (let i = 0; i < 10; i++) expectFailure(await call(ts, "GET", GET_NAME, { localAddress: "127.0.0.47" }), 3);
    expect((await call(ts, "GET", GET_NAME, { localAddress: "127.0.0.47", rd: "rdKey1" })).text).toBe(NAME);
  });

  it("a blocked address stays blocked while many other addresses each send one wrong key", async () => {
    const ts = await startServer({ server: { throttle: { ...QUICK, blockMs: 60_000, maxAddresses: 8 } } });
    const request = (key: string): string => `GET ${GET_NAME} HTTP/1.1\r\nHost: device\r\nApiRdKey: ${key}\r\n\r\n`;
    for (let i = 0; i < 3; i++) expectFailure(await rawOnce(ts.port, request(`guess-${i}`), "127.0.0.48"), 3);
    expectFailure(await rawOnce(ts.port, request("rdKey1"), "127.0.0.48"), 12);
    const addresses = Array.from({ length: 40 }, (_, i) => `127.0.2.${i + 1}`);
    for (const address of addresses) expectFailure(await rawOnce(ts.port, request("guess"), address), 3);
    expectFailure(await rawOnce(ts.port, request("rdKey1"), "127.0.0.48"), 12);
    expectFailure(await rawOnce(ts.port, request("guess-3"), "127.0.0.48"), 12);
    // The others, with one wrong key each, are served when they bring the right one.
    expect((await rawOnce(ts.port, request("rdKey1"), "127.0.2.1")).status).toBe(200);
  });
});
