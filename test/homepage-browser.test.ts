// The shipped pages in a real browser: Debian's chromium, headless, driven by playwright-core,
// against the real server. One browser for the file; each account gets its own context (its own
// credentials, cookies and cache). Under CI=true a missing chromium fails the file (lacks()).
// APIKEYD_SCREENSHOTS=1 writes the screenshots of docs/homepage.md to docs/images/.

import { existsSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_THROTTLE } from "../src/access/throttle.ts";
import { call, cleanup, closeAgents, CONFIG_DIR, lacks, ok, ROOT_DIR, startServer, type TestServer } from "./helpers.ts";

const CHROMIUM = "/usr/bin/chromium";
const WWW = join(CONFIG_DIR, "www");
const SCREENSHOTS = process.env["APIKEYD_SCREENSHOTS"] === "1";
const XSS_NAME = "<img src=x onerror=alert(1)>";

let browser: Browser;
let server: TestServer;

describe.skipIf(lacks(existsSync(CHROMIUM)))("the homepage in chromium", () => {
  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // playwright gives each launch a fresh --user-data-dir of its own.
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
      timeout: 15_000,
    });
    server = await startServer({ server: { wwwDir: WWW } });
  });
  afterAll(async () => {
    await browser?.close();
    await cleanup();
    await closeAgents();
  });

  /** A context logged in as one account (or with the given credentials), phone-sized, that records what must not happen. */
  async function as(username: string, password: string, viewport = { width: 412, height: 915 }): Promise<{ context: BrowserContext; page: Page; problems: string[] }> {
    const context = await browser.newContext({ httpCredentials: { username, password }, viewport });
    const page = await context.newPage();
    const problems: string[] = [];
    page.on("dialog", (dialog) => {
      problems.push(`dialog: ${dialog.message()}`);
      void dialog.dismiss();
    });
    page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error" && /Refused|Content.Security.Policy/i.test(message.text())) problems.push(`console: ${message.text()}`);
    });
    return { context, page, problems };
  }

  const screenshot = async (page: Page, name: string): Promise<void> => {
    if (SCREENSHOTS) await page.screenshot({ path: join(ROOT_DIR, "docs", "images", name), fullPage: true });
  };

  it("public: the device page shows what the device is, without any login", async () => {
    const { context, page, problems } = await as("nobody", "nothing");
    const answer = await page.goto(server.origin + "/");
    expect(answer?.status()).toBe(200);
    expect(await page.textContent("#device-name")).toBe("eNetMini1");
    expect(await page.textContent("#device-mac")).toBe("00:40:82:AB:CD:EF");
    expect(await page.textContent("#device-part")).toBe("101648");
    expect(await page.textContent("#device-board")).toContain("mkc1601");
    expect(await page.textContent("#device-firmware")).toMatch(/^apikeyd \d/);
    expect(await page.locator("a[href='/ro/']").count()).toBeGreaterThan(0);
    await screenshot(page, "homepage-public.png");
    expect(problems).toEqual([]);
    await context.close();
  });

  it("ro: sees every point with its live value, and cannot open rw/", async () => {
    const { context, page, problems } = await as("user_ro", "pass_ro");
    expect((await page.goto(server.origin + "/ro/"))?.status()).toBe(200);
    await expect.poll(() => page.locator(".point").count()).toBe(4);
    await expect.poll(() => page.textContent(".point[data-index='0'] .value")).toBe("347 mA");
    expect(await page.textContent(".point[data-index='2'] .name")).toBe("RELAY");
    await expect.poll(() => page.textContent(".point[data-index='2'] .value")).toBe("ON");
    // A change made elsewhere shows within a poll or two.
    expect((await call(server, "PUT", "/api/v1/data/entries/2/pin", { rd: "rdKey7", wr: "wrKey7", body: "pin=false" })).text).toBe(ok(false));
    await expect.poll(() => page.textContent(".point[data-index='2'] .value"), { timeout: 8_000 }).toBe("OFF");
    expect(await page.textContent(".point[data-index='2'] .meta")).not.toContain("never");
    await screenshot(page, "homepage-ro.png");
    expect((await page.goto(server.origin + "/rw/"))?.status()).toBe(401);
    expect((await page.goto(server.origin + "/su/"))?.status()).toBe(401);
    expect(problems).toEqual([]);
    await context.close();
  });

  it("rw: switches an output, sets an analog one, renames a point (a name of markup shows as text); the API shows each", async () => {
    const { context, page, problems } = await as("user_rw", "pass_rw");
    expect((await page.goto(server.origin + "/rw/"))?.status()).toBe(200);
    const relay = page.locator(".point[data-index='2']");
    await expect.poll(() => relay.locator(".value").textContent()).toMatch(/^(ON|OFF)$/);
    const before = (await relay.locator(".value").textContent()) === "ON";
    await relay.locator("button.toggle").click();
    await expect.poll(() => relay.locator(".status").textContent()).toBe(`Switched ${before ? "off" : "on"}.`);
    expect((await call(server, "GET", "/api/v1/data/entries/2/pin", { rd: "rdKey7" })).text).toBe(ok(!before));

    const pwm = page.locator(".point[data-index='1']");
    await pwm.locator("input[name='pin']").fill("42.5");
    await pwm.locator("form.set-output button").click();
    await expect.poll(() => pwm.locator(".status").textContent()).toBe("Output set.");
    expect((await call(server, "GET", "/api/v1/data/entries/1/pin", { rd: "rdKey7" })).text).toBe(ok(42.5));
    await pwm.locator("input[name='unit']").fill("mA");
    await pwm.locator("form.rename button").click();
    await expect.poll(() => pwm.locator(".status").textContent()).toBe("Saved.");
    await expect.poll(() => pwm.locator(".value").textContent()).toBe("42.5 mA");

    const gpio = page.locator(".point[data-index='3']");
    await gpio.locator("input[name='name']").fill(XSS_NAME);
    await gpio.locator("form.rename button").click();
    await expect.poll(() => gpio.locator(".status").textContent()).toBe("Saved.");
    expect((await call(server, "GET", "/api/v1/process/entries/3/name", { rd: "rdKey6" })).text).toBe(ok(XSS_NAME));
    await page.reload();
    await expect.poll(() => page.locator(".point[data-index='3'] .name").textContent()).toBe(XSS_NAME);
    expect(await page.locator("#points img").count()).toBe(0);
    await screenshot(page, "homepage-rw.png");
    expect(problems).toEqual([]);
    await context.close();

    // The ro page shows the same name as text too.
    const ro = await as("user_ro", "pass_ro");
    await ro.page.goto(server.origin + "/ro/");
    await expect.poll(() => ro.page.locator(".point[data-index='3'] .name").textContent()).toBe(XSS_NAME);
    expect(await ro.page.locator("#points img").count()).toBe(0);
    expect(ro.problems).toEqual([]);
    await ro.context.close();
  });

  it("su: renames the device and rotates a key pair; the old key is then refused and the new one works", async () => {
    const { context, page, problems } = await as("user_su", "pass_su", { width: 1024, height: 900 });
    expect((await page.goto(server.origin + "/su/"))?.status()).toBe(200);
    await page.locator("#device-form input[name='name']").fill("Line 3 pump");
    await page.locator("#device-form button").click();
    await expect.poll(() => page.locator("#device-form + .status").textContent()).toBe("Saved.");
    expect((await call(server, "GET", "/api/v1/properties/name", { rd: "rdKey1" })).text).toBe(ok("Line 3 pump"));
    // The realm names the device as it is now.
    expect((await request(server.origin + "/ro/").then(async (a) => (await a.body.text(), a.headers)))["www-authenticate"]).toBe('Basic realm="Line 3 pump ro", charset="UTF-8"');

    // An invalid address: the API's refusal, in words.
    await page.locator("#host-form input[name='address']").fill("192.168.15.300");
    await page.locator("#host-form button").click();
    await expect.poll(() => page.locator("#host-form + .status").textContent()).toContain("Error 8 (JSON_ERROR_INVALID_VALUE)");

    await page.locator("tr[data-pair='data'] button.rotate").click();
    const rd = (await page.locator(".shown-once code.new-rd").textContent()) ?? "";
    const wr = (await page.locator(".shown-once code.new-wr").textContent()) ?? "";
    expect(rd).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(wr).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(rd).not.toBe(wr);
    expect((await call(server, "GET", "/api/v1/data/entries/2/pin", { rd: "rdKey7" })).json?.meta.error).toBe(3);
    expect((await call(server, "GET", "/api/v1/data/entries/0/pin", { rd })).text).toBe(ok(347));
    expect((await call(server, "PUT", "/api/v1/data/entries/2/pin", { rd, wr, body: "pin=true" })).text).toBe(ok(true));
    // The table never shows a key; the box goes with the page.
    expect(await page.locator("table.pairs").textContent()).not.toContain(rd);

    // The life of a pair (docs/api.md §8): a label set from the page, and a rotation that must be
    // confirmed, confirmed from the page with the new keys.
    await page.locator("tr[data-pair='process'] button.life").click();
    await page.locator("#life input[name='label']").fill("line 3 PLC");
    await page.locator("#life button[type='submit']").click();
    await expect.poll(() => page.locator("#life .status").textContent()).toBe("Saved.");
    expect(JSON.parse((await call(server, "GET", "/api/v1/apikeys/keys/5/label", { rd: "rdKey2" })).text).data).toBe("line 3 PLC");
    await page.locator("#confirm-seconds").fill("60");
    await page.locator("tr[data-pair='process'] button.rotate").click();
    await expect.poll(() => page.locator(".shown-once strong").textContent()).toContain("process pair");
    const processRd = (await page.locator(".shown-once code.new-rd").textContent()) ?? "";
    expect(JSON.parse((await call(server, "GET", "/api/v1/apikeys/keys/5/confirmUntil", { rd: "rdKey2" })).text).data).toBeGreaterThan(0);
    await page.locator(".shown-once button.confirm-keys").click();
    await expect.poll(() => page.locator("#pairs-status").textContent()).toBe("Pair process: the new keys are confirmed.");
    expect(JSON.parse((await call(server, "GET", "/api/v1/apikeys/keys/5/confirmUntil", { rd: "rdKey2" })).text).data).toBe(0);
    expect((await call(server, "GET", "/api/v1/process/name", { rd: processRd })).status).toBe(200);

    await screenshot(page, "homepage-su.png");
    await page.reload();
    expect(await page.locator(".shown-once").count()).toBe(0);
    expect(problems).toEqual([]);
    await context.close();

    // The ro page gets the new read key from its includes: one authorization model.
    const ro = await as("user_ro", "pass_ro");
    await ro.page.goto(server.origin + "/ro/");
    await expect.poll(() => ro.page.textContent(".point[data-index='2'] .value")).toBe("ON");
    expect(await ro.page.locator("header h1").textContent()).toBe("Line 3 pump");
    await ro.context.close();
  });

  it("a sealed device: the pages get no key, ask for the pairs' keys (kept in the tab), show sealed pairs, and rotate by generate, showing the keys once", async () => {
    const sealedServer = await startServer({ server: { wwwDir: WWW } });
    const master = { rd: "rdKey2", wr: "wrKey2" };
    expect((await call(sealedServer, "PUT", "/api/v1/apikeys", { ...master, body: "sealed=true" })).status).toBe(200);

    // su: nothing but fingerprints in the page; the settings ask for keys; the apikeys keys entered rotate `data`.
    const su = await as("user_su", "pass_su", { width: 1024, height: 900 });
    expect((await su.page.goto(sealedServer.origin + "/su/"))?.status()).toBe(200);
    const html = await su.page.content();
    for (const key of ["rdKey2", "wrKey2", "rdKey7", "rdKey1", "$sha256$"]) expect(html).not.toContain(key);
    expect(await su.page.textContent("#page-status")).toContain("This device is sealed");
    expect(await su.page.textContent("tr[data-pair='data']")).toMatch(/sealed · [0-9a-f]{8}/);
    await expect.poll(() => su.page.locator("button.enter-keys[data-pair='properties']").count()).toBeGreaterThan(0);
    await su.page.locator("tr[data-pair='apikeys'] button.enter-keys").click();
    await su.page.locator("#keys-apikeys-apikeys-rd").fill("rdKey2");
    await su.page.locator("#keys-apikeys-apikeys-wr").fill("wrKey2");
    await su.page.locator("#keys-apikeys button[type='submit']").click();
    await expect.poll(() => su.page.textContent("tr[data-pair='apikeys']")).toContain("keys entered in this tab");
    await su.page.locator("tr[data-pair='data'] button.rotate").click();
    await expect.poll(() => su.page.locator(".shown-once code.new-rd").count()).toBe(1);
    const rd = (await su.page.locator(".shown-once code.new-rd").textContent()) ?? "";
    const wr = (await su.page.locator(".shown-once code.new-wr").textContent()) ?? "";
    expect(rd).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect((await call(sealedServer, "GET", "/api/v1/data/entries/0/pin", { rd })).text).toBe(ok(347));
    expect((await call(sealedServer, "GET", "/api/v1/apikeys/keys/6/rd", master)).text).not.toContain(rd);
    await expect.poll(() => su.page.textContent("tr[data-pair='data']")).toMatch(/sealed · [0-9a-f]{8}/);
    expect(await su.page.locator("table.pairs").textContent()).not.toContain(rd);

    // rw, in the same tab: the process keys are not known yet, so the page asks for both pairs.
    expect((await su.page.goto(sealedServer.origin + "/rw/"))?.status()).toBe(200);
    expect(await su.page.content()).not.toContain("rdKey6");
    await expect.poll(() => su.page.locator("#sealed-keys").count()).toBe(1);
    expect(await su.page.textContent("#live-status")).toBe("This device is sealed.");
    await su.page.locator("#sealed-keys-data-rd").fill(rd);
    await su.page.locator("#sealed-keys-data-wr").fill(wr);
    await su.page.locator("#sealed-keys-process-rd").fill("rdKey6");
    await su.page.locator("#sealed-keys-process-wr").fill("wrKey6");
    await su.page.locator("#sealed-keys button[type='submit']").click();
    await expect.poll(() => su.page.locator(".point").count()).toBe(4);
    await expect.poll(() => su.page.textContent(".point[data-index='0'] .value")).toBe("347 mA");
    await su.page.locator(".point[data-index='2'] button.toggle").click();
    await expect.poll(() => su.page.textContent(".point[data-index='2'] .status")).toContain("Switched");
    // ro in the same tab: the session's keys, no question.
    await su.page.goto(sealedServer.origin + "/ro/");
    await expect.poll(() => su.page.textContent(".point[data-index='0'] .value")).toBe("347 mA");
    expect(await su.page.locator("#sealed-keys").count()).toBe(0);
    expect(su.problems).toEqual([]);
    await su.context.close();

    // Another browser (a new tab's session): ro asks again, for read keys only.
    const ro = await as("user_ro", "pass_ro");
    await ro.page.goto(sealedServer.origin + "/ro/");
    await expect.poll(() => ro.page.locator("#sealed-keys").count()).toBe(1);
    expect(await ro.page.locator("#sealed-keys input").count()).toBe(2);
    await ro.context.close();
  });

  it("a wrong password is refused and, repeated, throttled (429 with Retry-After); the public page still answers", async () => {
    const guarded = await startServer({ server: { wwwDir: WWW, throttle: { ...DEFAULT_THROTTLE, maxFailures: 3 } } });
    const wrong = await as("user_su", "not-the-password");
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await wrong.page.goto(guarded.origin + "/su/"))?.status() ?? 0);
    expect(statuses[0]).toBe(401);
    expect(statuses).toContain(429);
    const blocked = await wrong.page.goto(guarded.origin + "/ro/");
    expect(blocked?.status()).toBe(429);
    expect(Number(blocked?.headers()["retry-after"])).toBeGreaterThan(0);
    expect((await wrong.page.goto(guarded.origin + "/"))?.status()).toBe(200);
    await wrong.context.close();
    // The right password from the same address waits too: the block is the address's.
    const right = await as("user_ro", "pass_ro");
    expect((await right.page.goto(guarded.origin + "/ro/"))?.status()).toBe(429);
    await right.context.close();
  });
});
