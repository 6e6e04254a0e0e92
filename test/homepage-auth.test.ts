// The three accounts on the ro, rw and su folders (HTTP Basic, RFC 7617) and the server-side
// includes with their echo rule (docs/homepage.md).

import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { DEFAULT_THROTTLE } from "../src/access/throttle.ts";
import { createLogger } from "../src/common/log.ts";
import { call, cleanup, closeAgents, CONFIG_DIR, ok, startServer, tempDir, type TestServer } from "./helpers.ts";
import { rawOnce, type RawAnswer } from "./raw-client.ts";

afterEach(cleanup);
afterAll(closeAgents);

const WWW = join(CONFIG_DIR, "www");
const ACCOUNTS = { ro: ["user_ro", "pass_ro"], rw: ["user_rw", "pass_rw"], su: ["user_su", "pass_su"] } as const;
const basic = (user: string, pass: string): string => "Basic " + Buffer.from(`${user}:${pass}`, "utf8").toString("base64");

function page(ts: TestServer, path: string, authorization?: string, localAddress?: string): Promise<RawAnswer> {
  const auth = authorization === undefined ? "" : `Authorization: ${authorization}\r\n`;
  return rawOnce(ts.port, `GET ${path} HTTP/1.1\r\nHost: device\r\n${auth}\r\n`, localAddress);
}

/** A logger that keeps every line, in both formats' text. */
function capture(): { lines: string[]; log: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  return { lines, log: createLogger("json", (line) => lines.push(line)) };
}

describe("the accounts: su opens every folder, rw opens rw and ro, ro only ro", () => {
  it("follows the hierarchy, and without credentials asks for them with a realm naming device and folder", async () => {
    const ts = await startServer({ server: { wwwDir: WWW } });
    const opens = { ro: ["ro"], rw: ["ro", "rw"], su: ["ro", "rw", "su"] } as const;
    for (const [account, [user, pass]] of Object.entries(ACCOUNTS)) {
      for (const folder of ["ro", "rw", "su"]) {
        const a = await page(ts, `/${folder}/`, basic(user, pass));
        const expected = (opens[account as keyof typeof opens] as readonly string[]).includes(folder) ? 200 : 401;
        expect({ account, folder, status: a.status }).toEqual({ account, folder, status: expected });
      }
    }
    for (const folder of ["ro", "rw", "su"]) {
      const a = await page(ts, `/${folder}/`);
      expect(a.status).toBe(401);
      expect(a.headers["www-authenticate"]).toBe(`Basic realm="eNetMini1 ${folder}", charset="UTF-8"`);
      expect(a.headers["content-type"]).toBe("text/html; charset=utf-8");
      // Without the login nothing is learnt of what the folder holds: a missing file asks the same.
      expect((await page(ts, `/${folder}/no-such-file`)).status).toBe(401);
    }
    expect((await page(ts, "/", basic("nobody", "x"))).status).toBe(200); // public pages ignore credentials
  });

  it("the folders' pages are never stored, cannot be framed, and forbid inline script", async () => {
    const ts = await startServer({ server: { wwwDir: WWW } });
    for (const path of ["/ro/", "/rw/", "/su/"]) {
      const a = await page(ts, path, basic(...ACCOUNTS.su));
      expect(a.status).toBe(200);
      expect(a.headers["cache-control"]).toBe("no-store");
      expect(a.headers["x-frame-options"]).toBe("DENY");
      const csp = a.headers["content-security-policy"] ?? "";
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).toMatch(/script-src 'self'(;|$)/);
      expect(csp).not.toContain("unsafe-inline");
      // The shipped pages keep to it: no inline script, no handler attribute, no external asset.
      expect(a.text).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/i);
      expect(a.text).not.toMatch(/\son[a-z]+=/i);
      expect(a.text).not.toMatch(/(src|href)="(https?:)?\/\//i);
    }
  });

  it("compares user name and password exactly; an empty password never logs in, its folder then opens to the accounts above", async () => {
    const ts = await startServer({ server: { wwwDir: WWW, throttle: { ...DEFAULT_THROTTLE, maxFailures: 100 } } });
    for (const [user, pass] of [["user_ro", "pass_r"], ["user_ro", "pass_ro "], ["USER_RO", "pass_ro"], ["user_ro", "PASS_RO"], ["user_ro", ""], ["", ""], ["user_rw", "pass_ro"]]) {
      expect((await page(ts, "/ro/", basic(user as string, pass as string))).status).toBe(401);
    }
    for (const bad of ["Basic", "Basic !!!!", "Basic dXNlcl9ybw==", "Bearer abc", basic("user_ro", "pass_ro") + "x"]) {
      expect((await page(ts, "/ro/", bad)).status).toBe(401);
    }
    expect((await page(ts, "/ro/", basic("user_ro", "pass_ro").replace("Basic", "bAsIc"))).status).toBe(200);
    const two = await rawOnce(ts.port, `GET /ro/ HTTP/1.1\r\nHost: device\r\nAuthorization: ${basic(...ACCOUNTS.ro)}\r\nAuthorization: ${basic(...ACCOUNTS.ro)}\r\n\r\n`);
    expect(two.status).toBe(400);

    expect((await call(ts, "PUT", "/api/v1/httpro", { rd: "rdKey3", wr: "wrKey3", body: "pass=" })).json?.meta.error).toBe(0);
    expect((await page(ts, "/ro/", basic("user_ro", ""))).status).toBe(401);
    expect((await page(ts, "/ro/", basic("user_ro", "pass_ro"))).status).toBe(401);
    expect((await page(ts, "/ro/", basic(...ACCOUNTS.rw))).status).toBe(200);
  });

  it("a change of an account is effective at once, on a connection already open too; so is the realm's name", async () => {
    const ts = await startServer({ server: { wwwDir: WWW } });
    expect((await page(ts, "/rw/", basic(...ACCOUNTS.rw))).status).toBe(200);
    const changed = await call(ts, "PUT", "/api/v1/httprw", { rd: "rdKey4", wr: "wrKey4", body: "name=fitter&pass=n%C3%A9w%20p%C3%A4ss" });
    expect(changed.json?.meta.error).toBe(0);
    expect((await page(ts, "/rw/", basic(...ACCOUNTS.rw))).status).toBe(401);
    expect((await page(ts, "/rw/", basic("fitter", "néw päss"))).status).toBe(200);
    expect((await call(ts, "PUT", "/api/v1/properties/name", { rd: "rdKey1", wr: "wrKey1", body: 'name=Pump "7" \\ ü' })).json?.meta.error).toBe(0);
    expect((await page(ts, "/su/")).headers["www-authenticate"]).toBe(`Basic realm="Pump '7' ' ? su", charset="UTF-8"`);
  });

  it("shares the keys' throttle: wrong passwords block the address (429, Retry-After) for pages and keys alike; public pages still answer", async () => {
    const { lines, log } = capture();
    const ts = await startServer({ server: { wwwDir: WWW, log, throttle: { ...DEFAULT_THROTTLE, maxFailures: 3 } } });
    const from = "127.0.0.2";
    for (let i = 0; i < 3; i++) expect((await page(ts, "/su/", basic("user_su", `guess-${i}`), from)).status).toBe(401);
    const blocked = await page(ts, "/su/", basic(...ACCOUNTS.su), from);
    expect(blocked.status).toBe(429);
    expect(Number(blocked.headers["retry-after"])).toBeGreaterThanOrEqual(29);
    expect((await page(ts, "/ro/", undefined, from)).status).toBe(429);
    expect((await call(ts, "GET", "/api/v1/properties", { rd: "rdKey1", localAddress: from })).json?.meta.error).toBe(12);
    expect((await page(ts, "/", undefined, from)).status).toBe(200);
    expect((await page(ts, "/su/", basic(...ACCOUNTS.su))).status).toBe(200); // another address
    // A wrong key counts towards a page's block too.
    const other = "127.0.0.3";
    for (let i = 0; i < 3; i++) await call(ts, "GET", "/api/v1/properties", { rd: `wrong-${i}`, localAddress: other });
    expect((await page(ts, "/ro/", basic(...ACCOUNTS.ro), other)).status).toBe(429);
    // Missing credentials and a right password of a lower account are not guesses.
    const third = "127.0.0.4";
    for (let i = 0; i < 5; i++) expect((await page(ts, "/su/", basic(...ACCOUNTS.ro), third)).status).toBe(401);
    for (let i = 0; i < 5; i++) expect((await page(ts, "/su/", undefined, third)).status).toBe(401);
    expect((await page(ts, "/su/", basic(...ACCOUNTS.su), third)).status).toBe(200);
    const refusals = lines.filter((l) => l.includes('"login-refused"'));
    expect(refusals.length).toBe(3);
    expect(JSON.parse(refusals[0] as string)).toMatchObject({ level: "warn", client: from, folder: "su" });
  });

  it("never logs a user name or a password, right or wrong, in either format", async () => {
    for (const format of ["text", "json"] as const) {
      const lines: string[] = [];
      const log = createLogger(format, (line) => lines.push(line));
      const ts = await startServer({ server: { wwwDir: WWW, log } });
      const secretUser = "unmistakable-user-7f3a";
      const secretPass = "unmistakable-pass-9c1d";
      await call(ts, "PUT", "/api/v1/httpsu", { rd: "rdKey5", wr: "wrKey5", body: `name=${secretUser}&pass=${secretPass}` });
      await page(ts, "/su/", basic(secretUser, secretPass));
      await page(ts, "/su/", basic(secretUser, secretPass + "-wrong"));
      await page(ts, "/su/", basic("other-" + secretUser, secretPass));
      await rawOnce(ts.port, `GET http://${secretUser}:${secretPass}@device/su/ HTTP/1.1\r\nHost: device\r\n\r\n`);
      const all = lines.join("\n");
      expect(all).toContain("refused login");
      for (const secret of [secretUser, secretPass, Buffer.from(`${secretUser}:${secretPass}`).toString("base64").slice(0, 16)]) expect(all).not.toContain(secret);
      await ts.stop();
    }
  });
});

describe("server-side includes", () => {
  async function ssiRoot(pages: Record<string, string>): Promise<string> {
    const www = await tempDir("apikeyd-ssi-");
    for (const folder of ["ro", "rw", "su"]) await mkdir(join(www, folder));
    for (const [path, text] of Object.entries(pages)) await writeFile(join(www, path), text);
    return www;
  }

  it("echoes the variables, HTML-escaped", async () => {
    const www = await ssiRoot({
      "vars.shtml": ["name", "time", "uptime", "macaddress", "appname", "appversion", "ipaddr"].map((v) => `${v}=[<!--#echo var="${v}" -->]`).join("\n"),
      "plain.html": 'left as is: <!--#echo var="name" -->',
    });
    const ts = await startServer({ server: { wwwDir: www, clock: () => Date.UTC(2026, 0, 2, 3, 4, 5) } });
    expect((await call(ts, "PUT", "/api/v1/properties/name", { rd: "rdKey1", wr: "wrKey1", body: { name: "<b>\"A&B'</b>" } })).json?.meta.error).toBe(0);
    const a = await page(ts, "/vars.shtml");
    expect(a.headers["cache-control"]).toBe("no-store");
    expect(a.headers["etag"]).toBeUndefined();
    expect(a.text).toMatch(/^name=\[&#60;b&#62;&#34;A&#38;B&#39;&#60;\/b&#62;\]\ntime=\[2026-01-02 03:04:05 UTC\]\nuptime=\[00:00:00\]\nmacaddress=\[00:40:82:AB:CD:EF\]\nappname=\[apikeyd\]\nappversion=\[[0-9a-z.-]+\]\nipaddr=\[127\.0\.0\.1\]$/);
    expect((await page(ts, "/plain.html")).text).toBe('left as is: <!--#echo var="name" -->');
  });

  it("enforces the echo rule of each folder; a key of the apikeys pair outside su gives nothing and the log says why", async () => {
    const paths = [
      "/api/v1/device/0/address",
      "/api/v1/properties/name",
      "/api/v1/properties/mqtt/pass",
      "/api/v1/data/entries/2/pin",
      "/api/v1/process/entries/0/name",
      "/api/v1/apikeys/keys/6/rd",
      "/api/v1/apikeys/keys/6/wr",
      "/api/v1/apikeys/keys/1/rd",
      "/api/v1/apikeys/keys/1/wr",
      "/api/v1/apikeys/keys/0/rd",
      "/api/v1/apikeys",
      "/api/v1/httpsu/pass",
    ];
    const text = paths.map((p) => `[<!--#echo var="${p}" -->]`).join("");
    const www = await ssiRoot({ "p.shtml": text, "ro/p.shtml": text, "rw/p.shtml": text, "su/p.shtml": text });
    const { lines, log } = capture();
    const ts = await startServer({ server: { wwwDir: www, log } });
    const shown = async (path: string): Promise<string[]> => {
      const body = (await page(ts, path, basic(...ACCOUNTS.su))).text;
      return [...body.matchAll(/\[([^\]]*)\]/g)].map((m) => m[1] as string);
    };
    const all = await shown("/su/p.shtml");
    expect(all.slice(0, 10)).toEqual(["004082ABCDEF", "eNetMini1", "pass_mqtt", "true", "AIN", "rdKey7", "wrKey7", "rdKey2", "wrKey2", "rdKey1"]);
    expect(all[10]).toContain("&#34;keys&#34;:");
    expect(all[11]).toBe("pass_su");
    const expect_ = (visible: boolean[]): string[] => all.map((v, i) => (visible[i] ? v : ""));
    //                          device props/name mqtt  data  process data-rd data-wr key-rd key-wr prop-rd apikeys httpsu
    expect(await shown("/p.shtml")).toEqual(expect_([true, true, false, false, false, false, false, false, false, false, false, false]));
    expect(await shown("/ro/p.shtml")).toEqual(expect_([true, true, false, true, true, true, false, false, false, false, false, false]));
    expect(await shown("/rw/p.shtml")).toEqual(expect_([true, true, false, true, true, true, true, false, false, false, false, false]));
    const refused = lines.filter((l) => l.includes('"ssi echo refused"')).map((l) => JSON.parse(l) as Record<string, string>);
    const apikeysPair = refused.filter((r) => r["path"] === "/api/v1/apikeys/keys/1/rd");
    expect(apikeysPair.map((r) => r["page"])).toEqual(["p.shtml", "ro/p.shtml", "rw/p.shtml"]);
    expect(apikeysPair[1]?.["reason"]).toBe("a key of the apikeys pair is for su pages only");
    // The log names paths and reasons, never a value.
    for (const secret of ["rdKey2", "wrKey2", "pass_su", "pass_mqtt"]) expect(lines.join("\n")).not.toContain(secret);
  });

  it("includes files inside the root only, never from a folder above the page's, and stops nesting", async () => {
    const www = await ssiRoot({
      "part.html": "<b>part</b>",
      "loop.shtml": 'x<!--#include file="loop.shtml" -->',
      "ro/page.shtml": '[<!--#include file="../part.html" -->][<!--#include file="/part.html" -->][<!--#include file="../su/secret.html" -->][<!--#include file="../../outside.txt" -->][<!--#include file="../.hidden" -->]',
      "su/secret.html": "su secret",
      ".hidden": "hidden",
      "fan.shtml": Array(64).fill('<!--#include file="big.txt" -->').join(""),
      "big.txt": "y".repeat(64 * 1024),
    });
    await writeFile(join(www, "..", "outside.txt"), "outside");
    const { lines, log } = capture();
    const ts = await startServer({ server: { wwwDir: www, log } });
    expect((await page(ts, "/ro/page.shtml", basic(...ACCOUNTS.ro))).text).toBe("[<b>part</b>][<b>part</b>][][][]");
    expect((await page(ts, "/loop.shtml")).text).toBe("xxxxx");
    expect(lines.some((l) => l.includes("nested too deep"))).toBe(true);
    expect(lines.some((l) => l.includes("a folder above the page"))).toBe(true);
    // An su page may include what lies below it.
    await writeFile(join(www, "su", "page.shtml"), '<!--#include file="../ro/page.shtml" -->');
    expect((await page(ts, "/su/page.shtml", basic(...ACCOUNTS.su))).text).toBe("[<b>part</b>][<b>part</b>][su secret][][]");
    const fan = await page(ts, "/fan.shtml");
    expect(fan.status).toBe(200);
    expect(Buffer.byteLength(fan.text)).toBe(2 * 1024 * 1024);
    expect(lines.some((l) => l.includes("cut off"))).toBe(true);
  });

  it("the shipped pages embed only the keys their folder may see", async () => {
    const ts = await startServer({ server: { wwwDir: WWW } });
    const keysIn = (text: string): string[] => [...text.matchAll(/(rd|wr)Key\d/g)].map((m) => m[0]).sort();
    expect(keysIn((await page(ts, "/")).text)).toEqual([]);
    expect(keysIn((await page(ts, "/ro/", basic(...ACCOUNTS.ro))).text)).toEqual(["rdKey6", "rdKey7"]);
    expect(keysIn((await page(ts, "/rw/", basic(...ACCOUNTS.rw))).text)).toEqual(["rdKey6", "rdKey7", "wrKey6", "wrKey7"]);
    expect(keysIn((await page(ts, "/su/", basic(...ACCOUNTS.su))).text)).toHaveLength(14);
    expect((await page(ts, "/")).text).toContain("00:40:82:AB:CD:EF");
    expect((await call(ts, "GET", "/api/v1/properties/name", { rd: "rdKey1" })).text).toBe(ok("eNetMini1"));
  });
});
