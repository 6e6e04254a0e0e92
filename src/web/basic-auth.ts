/**
 * The three web accounts (docs/homepage.md): HTTP Basic (RFC 7617) against the committed documents
 * of `httpro`, `httprw` and `httpsu`, read at every request (a change is effective at once). User
 * name and password are compared in constant time, in fixed-width slots as the keys are
 * (access/keys.ts), against every account, without stopping at the first that matches.
 */

import { nodeCrypto } from "../common/lazy-crypto.ts";
import type { Device } from "../state/device.ts";
import { isObject } from "../state/schema.ts";

/** The folders behind an account, lowest first; an account opens its own folder and those below it. */
export const FOLDERS = ["ro", "rw", "su"] as const;
export type Folder = (typeof FOLDERS)[number];

/** The level of a folder: 0 public, 1 ro, 2 rw, 3 su. */
export type Level = 0 | 1 | 2 | 3;

/** The account endpoint of each folder. */
export const ACCOUNT_OF: Readonly<Record<Folder, string>> = { ro: "httpro", rw: "httprw", su: "httpsu" };

/** The level of the first segment of a path under the web root (0: public). */
export function levelOf(firstSegment: string | undefined): Level {
  const i = FOLDERS.indexOf(firstSegment as Folder);
  return (i + 1) as Level;
}

/** The folder of a level above 0. */
export function folderOf(level: Level): Folder | undefined {
  return level === 0 ? undefined : FOLDERS[level - 1];
}

// A user name or password is a string of at most 255 UTF-16 units (the schema's string rule): at
// most 765 bytes of UTF-8. A slot holds the byte length (2 bytes) and the bytes, zero-padded.
const MAX_CREDENTIAL_BYTES = 1024;
const SLOT_BYTES = 2 + MAX_CREDENTIAL_BYTES;

function slotOf(value: string): Buffer | undefined {
  const bytes = Buffer.from(value, "utf8");
  if (bytes.length > MAX_CREDENTIAL_BYTES) return undefined;
  const slot = Buffer.alloc(SLOT_BYTES);
  slot.writeUInt16BE(bytes.length, 0);
  bytes.copy(slot, 2);
  return slot;
}

/** One account as the comparison needs it; `usable` false for an empty (or missing) password. */
interface AccountSlots {
  readonly user: Buffer;
  readonly pass: Buffer;
  readonly usable: boolean;
}

const NEVER: AccountSlots = Object.freeze({ user: Buffer.alloc(SLOT_BYTES, 0xff), pass: Buffer.alloc(SLOT_BYTES, 0xff), usable: false });

/** Slots by committed document: documents are frozen and replaced by every change, so this never goes stale. */
const slotsByDoc = new WeakMap<object, AccountSlots>();

function accountSlots(doc: unknown): AccountSlots {
  if (!isObject(doc)) return NEVER;
  let slots = slotsByDoc.get(doc);
  if (slots === undefined) {
    const user = typeof doc["name"] === "string" ? slotOf(doc["name"]) : undefined;
    const pass = typeof doc["pass"] === "string" ? slotOf(doc["pass"]) : undefined;
    slots = user === undefined || pass === undefined ? NEVER : { user, pass, usable: doc["pass"] !== "" };
    slotsByDoc.set(doc, slots);
  }
  return slots;
}

/** Credentials read from an Authorization header. */
export interface Credentials {
  readonly user: string;
  readonly pass: string;
}

/** What the request's Authorization header says: nothing, something unusable, or credentials. */
export type Presented = { readonly kind: "none" } | { readonly kind: "malformed" } | { readonly kind: "basic"; readonly credentials: Credentials };

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
/** Longer headers cannot hold an account's credentials (two 1 KiB slots, base64). */
const MAX_HEADER_CHARS = 4 * Math.ceil((2 * MAX_CREDENTIAL_BYTES + 1) / 3);

/** Reads the Authorization header from the raw list, so that one sent twice is seen (node keeps the first). */
export function presentedCredentials(rawHeaders: readonly string[]): Presented | "duplicated" {
  let value: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if ((rawHeaders[i] as string).toLowerCase() !== "authorization") continue;
    if (value !== undefined) return "duplicated";
    value = rawHeaders[i + 1] as string;
  }
  if (value === undefined) return { kind: "none" };
  const match = /^basic[ \t]+(\S*)[ \t]*$/i.exec(value);
  const token = match?.[1];
  if (token === undefined || token.length > MAX_HEADER_CHARS || token.length % 4 !== 0 || !BASE64.test(token)) return { kind: "malformed" };
  const decoded = Buffer.from(token, "base64");
  const text = new TextDecoder("utf-8", { fatal: false }).decode(decoded);
  const colon = text.indexOf(":");
  if (colon === -1) return { kind: "malformed" };
  return { kind: "basic", credentials: { user: text.slice(0, colon), pass: text.slice(colon + 1) } };
}

const scratchUser = Buffer.alloc(SLOT_BYTES);
const scratchPass = Buffer.alloc(SLOT_BYTES);

function fill(slot: Buffer, value: string): boolean {
  slot.fill(0);
  const bytes = Buffer.from(value, "utf8");
  if (bytes.length > MAX_CREDENTIAL_BYTES) return false;
  slot.writeUInt16BE(bytes.length, 0);
  bytes.copy(slot, 2);
  return true;
}

/**
 * The level of the highest account whose user name and password both equal the credentials
 * (0: none). Every account is compared whole, whatever matched before; an account with an empty
 * password matches nothing. A credential longer than any account's could be is refused before the
 * comparison: that depends only on what the client sent.
 */
export function accountLevel(device: Device, credentials: Credentials): Level {
  const fits = fill(scratchUser, credentials.user) && fill(scratchPass, credentials.pass);
  let level: Level = 0;
  FOLDERS.forEach((folder, i) => {
    const account = accountSlots(device.endpoints.get(ACCOUNT_OF[folder])?.docs.committed);
    const userSame = nodeCrypto().timingSafeEqual(account.user, scratchUser);
    const passSame = nodeCrypto().timingSafeEqual(account.pass, scratchPass);
    if (fits && userSame && passSame && account.usable) level = (i + 1) as Level;
  });
  scratchUser.fill(0);
  scratchPass.fill(0);
  return level;
}
