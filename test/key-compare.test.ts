import { describe, expect, it } from "vitest";
import { buildKeyring, keyMatches, type KeyPair } from "../src/access/keys.ts";

const pairOf = (rd: string, wr = "w"): KeyPair => {
  const pair = buildKeyring({ keys: [{ name: "e", rd, wr }] }).get("e");
  if (pair === undefined) throw new Error("no pair");
  return pair;
};

describe("keyMatches (fixed-width slots, constant time)", () => {
  it("matches the stored key exactly and nothing near it", () => {
    const { rdSlot } = pairOf("rdKey1");
    expect(keyMatches(rdSlot, "rdKey1")).toBe(true);
    for (const guess of ["rdKey", "rdKey12", "RDKEY1", "rdKey2", "", "rdKey1 ", " rdKey1"]) {
      expect(keyMatches(rdSlot, guess), guess).toBe(false);
    }
  });

  it("tells a key from the same key followed by padding bytes", () => {
    const { rdSlot } = pairOf("abc");
    expect(keyMatches(rdSlot, "abc\u0000")).toBe(false);
    expect(keyMatches(rdSlot, "abc\u0000\u0000")).toBe(false);
  });

  it("handles the longest key (128 characters) and refuses a longer guess", () => {
    const longest = "k".repeat(128);
    const { rdSlot } = pairOf(longest);
    expect(keyMatches(rdSlot, longest)).toBe(true);
    expect(keyMatches(rdSlot, longest + "k")).toBe(false);
    expect(keyMatches(rdSlot, "k".repeat(127))).toBe(false);
  });

  it("never matches through a character outside printable ASCII (latin1 would truncate U+0161 to 'a')", () => {
    const { rdSlot } = pairOf("a");
    expect(keyMatches(rdSlot, "\u0161")).toBe(false);
    expect(keyMatches(rdSlot, "\u00e1")).toBe(false);
  });

  it("keeps the read and write slots apart, and an empty key matches only the empty string", () => {
    const pair = pairOf("", "wrKey");
    expect(keyMatches(pair.rdSlot, "")).toBe(true);
    expect(keyMatches(pair.rdSlot, "wrKey")).toBe(false);
    expect(keyMatches(pair.wrSlot, "wrKey")).toBe(true);
  });

  it("gives a stored key that breaks the key rule a slot that matches nothing", () => {
    const { rdSlot } = pairOf("has space");
    expect(keyMatches(rdSlot, "has space")).toBe(false);
    expect(keyMatches(rdSlot, "")).toBe(false);
  });
});
