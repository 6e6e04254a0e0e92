// The homepage's file rules (docs/homepage.md): GET and HEAD, index files, Content-Type, ETag and
// Last-Modified with 304, no listing, no dot-files, never a byte from outside the web root, a 404
// page; /api/ keeps its envelope. Raw bytes where an HTTP library would tidy the path up.

import { mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { request } from "undici";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { cleanup, closeAgents, CONFIG_DIR, startServer, tempDir, type TestServer } from "./helpers.ts";
import { expectFailure, rawOnce, RawClient } from "./raw-client.ts";

afterEach(cleanup);
afterAll(closeAgents);

const SECRET = "TOP-SECRET-OUTSIDE-THE-ROOT";
const RO = "Basic " + Buffer.from("user_ro:pass_ro").toString("base64");

/** A web root of our own beside a secret file, with the links and oddities the rules are about. */
async function fixture(): Promise<{ www: string; outside: string }> {
  const base = await tempDir("apikeyd-www-");
  const www = join(base, "www");
  const outside = join(base, "outside");
  await mkdir(join(www, "ro", "sub"), { recursive: true });
  await mkdir(join(www, "rw"));
  await mkdir(join(www, "su"));
  await mkdir(join(www, "empty"));
  await mkdir(join(www, ".git"));
  await mkdir(outside);
  await writeFile(join(outside, "secret.txt"), SECRET);
  await writeFile(join(www, "secret.txt"), "the root's own secret.txt is public");
  await writeFile(join(www, "index.html"), "<!doctype html><title>home</title>home page");
  await writeFile(join(www, "style.css"), "body { color: black; }");
  await writeFile(join(www, "app.js"), "console.log(1);");
  await writeFile(join(www, "logo.svg"), "<svg xmlns='http://www.w3.org/2000/svg'/>");
  await writeFile(join(www, "data.bin"), Buffer.from([0, 1, 2]));
  await writeFile(join(www, ".htpasswd"), SECRET);
  await writeFile(join(www, ".git", "config"), SECRET);
  await writeFile(join(www, "ro", "index.html"), "ro page");
  await writeFile(join(www, "ro", "sub", "index.shtml"), "ro sub <!--#echo var=\"name\" -->");
  await writeFile(join(www, "su", "secret.html"), "su only");
  await writeFile(join(www, "big.txt"), Buffer.alloc(1024 * 1024 + 1, 0x61));
  await symlink(join(outside, "secret.txt"), join(www, "link-out.txt"));
  await symlink(outside, join(www, "dir-out"));
  await symlink(join(www, "style.css"), join(www, "link-in.css"));
  await symlink(join(www, "su", "secret.html"), join(www, "to-su.html"));
  await symlink(join(www, ".htpasswd"), join(www, "to-dotfile.txt"));
  return { www, outside };
}

const get = (path: string, extra = ""): string => `GET ${path} HTTP/1.1\r\nHost: device\r\n${extra}\r\n`;

async function served(ts: TestServer, path: string, extra = ""): Promise<{ status: number; headers: Record<string, string>; text: string }> {
  return rawOnce(ts.port, get(path, extra));
}

describe("files of the web root", () => {
  it("serves the usual web files with their Content-Type, the security headers and an exact length", async () => {
    const { www } = await fixture();
    const ts = await startServer({ server: { wwwDir: www } });
    const types: Record<string, string> = {
      "/index.html": "text/html; charset=utf-8",
      "/style.css": "text/css; charset=utf-8",
      "/app.js": "text/javascript; charset=utf-8",
      "/logo.svg": "image/svg+xml",
      "/data.bin": "application/octet-stream",
    };
    for (const [path, type] of Object.entries(types)) {
      const a = await served(ts, path);
      expect({ path, status: a.status, type: a.headers["content-type"] }).toEqual({ path, status: 200, type });
      expect(a.headers["content-length"]).toBe(String(Buffer.byteLength(a.text)));
      expect(a.headers["x-content-type-options"]).toBe("nosniff");
      expect(a.headers["x-frame-options"]).toBe("DENY");
      expect(a.headers["content-security-policy"]).toContain("script-src 'self'");
      expect(a.headers["content-security-policy"]).toContain("frame-ancestors 'none'");
      expect(a.headers["cache-control"]).toBe("no-cache");
      expect(Object.keys(a.headers).filter((h) => h.startsWith("access-control-"))).toEqual([]);
    }
  });

  it("answers a folder with its index file, redirects a folder named without its slash, and never lists one", async () => {
    const { www } = await fixture();
    const ts = await startServer({ server: { wwwDir: www } });
    expect((await served(ts, "/")).text).toContain("home page");
    expect((await served(ts, "/?x=1")).text).toContain("home page");
    const redirect = await served(ts, "/ro", `Authorization: ${RO}\r\n`);
    expect({ status: redirect.status, location: redirect.headers["location"] }).toEqual({ status: 301, location: "/ro/" });
    expect((await served(ts, "/ro/", `Authorization: ${RO}\r\n`)).text).toBe("ro page");
    expect((await served(ts, "/ro/sub/", `Authorization: ${RO}\r\n`)).text).toBe("ro sub eNetMini1");
    const empty = await served(ts, "/empty/");
    expect(empty.status).toBe(404);
    expect(empty.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(empty.text).toContain("404 Not Found");
    expect((await served(ts, "/index.html/")).status).toBe(404);
    expect((await served(ts, "/nothing.html")).status).toBe(404);
  });

  it("GET and HEAD only: any other method is 405 with Allow, HEAD has GET's headers and no body", async () => {
    const { www } = await fixture();
    const ts = await startServer({ server: { wwwDir: www } });
    for (const method of ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"]) {
      const a = await rawOnce(ts.port, `${method} /index.html HTTP/1.1\r\nHost: device\r\nContent-Length: 0\r\n\r\n`);
      expect({ method, status: a.status, allow: a.headers["allow"] }).toEqual({ method, status: 405, allow: "GET, HEAD" });
    }
    // A body sent with a page request is never read: the connection closes after the answer.
    const posted = new RawClient(ts.port).send("POST / HTTP/1.1\r\nHost: device\r\nContent-Length: 5\r\n\r\nhello");
    expect((await posted.next()).headers["connection"]).toBe("close");
    await posted.closed();
    const get1 = await served(ts, "/style.css");
    const head = new RawClient(ts.port).send("HEAD /style.css HTTP/1.1\r\nHost: device\r\n\r\n" + get("/style.css"));
    const h = await head.next();
    // A HEAD answer's Content-Length is GET's, with no body: the raw client reads the next answer right after.
    expect(h.status).toBe(200);
    expect(h.headers["content-length"]).toBe(get1.headers["content-length"]);
    expect(h.headers["etag"]).toBe(get1.headers["etag"]);
    head.destroy();
  });

  it("ETag and Last-Modified: 304 when If-None-Match or If-Modified-Since still holds", async () => {
    const { www } = await fixture();
    const ts = await startServer({ server: { wwwDir: www } });
    const first = await request(`${ts.origin}/style.css`);
    await first.body.text();
    const etag = first.headers["etag"] as string;
    const modified = first.headers["last-modified"] as string;
    expect(etag).toMatch(/^"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+"$/);
    const byTag = await request(`${ts.origin}/style.css`, { headers: { "If-None-Match": `"other", ${etag}` } });
    expect({ status: byTag.statusCode, body: await byTag.body.text(), etag: byTag.headers["etag"] }).toEqual({ status: 304, body: "", etag });
    const byDate = await request(`${ts.origin}/style.css`, { headers: { "If-Modified-Since": modified } });
    expect({ status: byDate.statusCode, body: await byDate.body.text() }).toEqual({ status: 304, body: "" });
    const stale = await request(`${ts.origin}/style.css`, { headers: { "If-None-Match": '"other"', "If-Modified-Since": modified } });
    expect({ status: stale.statusCode, body: await stale.body.text() }).toEqual({ status: 200, body: "body { color: black; }" });
    const old = await request(`${ts.origin}/style.css`, { headers: { "If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT" } });
    expect(old.statusCode).toBe(200);
    await old.body.text();
  });

  it("never a byte from outside the root: dot segments, encoded slashes, backslashes, NUL, symlinks out", async () => {
    const { www } = await fixture();
    const ts = await startServer({ server: { wwwDir: join(www, "ro") } }); // so that ../secret.txt exists
    const attempts = [
      "/../secret.txt",
      "/./index.html",
      "/sub/../../secret.txt",
      "/%2e%2e/secret.txt",
      "/%2E%2E/secret.txt",
      "/.%2e/secret.txt",
      "/..%2fsecret.txt",
      "/..%2Fsecret.txt",
      "/sub%2f..%2f..%2fsecret.txt",
      "/..%5csecret.txt",
      "/..\\secret.txt",
      "/sub\\..\\..\\secret.txt",
      "/index.html%00.txt",
      "/%00",
      "//secret.txt",
      "/sub//index.shtml",
      "/%252e%252e/secret.txt",
    ];
    for (const path of attempts) {
      const a = await served(ts, path);
      expect({ path, status: a.status }).toEqual({ path, status: 404 });
      expect(a.text).not.toContain("public");
    }
    expect((await served(ts, "/%zz")).status).toBe(400);
    expect((await served(ts, "/index.html")).text).toBe("ro page");
  });

  it("no dot-files; symlinks that lead out of the root or to a dot-file are missing, those inside are served", async () => {
    const { www } = await fixture();
    const ts = await startServer({ server: { wwwDir: www } });
    for (const path of ["/.htpasswd", "/.git/config", "/.git/", "/%2ehtpasswd", "/link-out.txt", "/dir-out/secret.txt", "/dir-out/", "/to-dotfile.txt"]) {
      const a = await served(ts, path);
      expect({ path, status: a.status }).toEqual({ path, status: 404 });
      expect(a.text).not.toContain(SECRET);
    }
    expect((await served(ts, "/link-in.css")).text).toBe("body { color: black; }");
    // A link into su/ needs su's login, whatever its own name says.
    expect((await served(ts, "/to-su.html")).status).toBe(401);
    expect((await served(ts, "/to-su.html", `Authorization: ${RO}\r\n`)).status).toBe(401);
    const su = "Basic " + Buffer.from("user_su:pass_su").toString("base64");
    expect((await served(ts, "/to-su.html", `Authorization: ${su}\r\n`)).text).toBe("su only");
  });

  it("reuses a read for a second of the server's clock: a change shows after it, and a link planted meanwhile never leads out", async () => {
    const { www, outside } = await fixture();
    let now = Date.UTC(2026, 10, 26, 12, 0, 0);
    const ts = await startServer({ server: { wwwDir: www, clock: () => now } });
    expect((await served(ts, "/style.css")).text).toBe("body { color: black; }");
    await writeFile(join(www, "style.css"), "body { color: red; }");
    now += 999;
    expect((await served(ts, "/style.css")).text).toBe("body { color: black; }"); // within the second: reused
    now += 1;
    expect((await served(ts, "/style.css")).text).toBe("body { color: red; }");
    // The file becomes a link out of the root: reused within the second (the old, checked bytes),
    // then missing; never the outside file.
    const { rm } = await import("node:fs/promises");
    await rm(join(www, "style.css"));
    await symlink(join(outside, "secret.txt"), join(www, "style.css"));
    expect((await served(ts, "/style.css")).text).toBe("body { color: red; }");
    now += 1_000;
    const after = await served(ts, "/style.css");
    expect(after.status).toBe(404);
    expect(after.text).not.toContain(SECRET);
  });

  it("a file over the size limit is not served (404, and the log says why)", async () => {
    const { www } = await fixture();
    const lines: string[] = [];
    const ts = await startServer({ server: { wwwDir: www, log: { log: (_l, m, f) => lines.push(`${m} ${JSON.stringify(f)}`) } } });
    expect((await served(ts, "/big.txt")).status).toBe(404);
    expect(lines.join("\n")).toContain("over the size limit");
  });

  it("/api/ keeps its envelope; without a web root every page is the 404 page", async () => {
    const ts = await startServer({ server: { wwwDir: join(CONFIG_DIR, "www") } });
    for (const path of ["/api/v2/properties", "/api/", "/api/v1", "/api/v1/nope", "/api/index.html"]) expectFailure(await served(ts, path), 2);
    expectFailure(await rawOnce(ts.port, "OPTIONS * HTTP/1.1\r\nHost: device\r\n\r\n"), 2);
    expectFailure(await rawOnce(ts.port, "GET http://device/index.html HTTP/1.1\r\nHost: device\r\n\r\n"), 2);
    expect((await served(ts, "/API/V1/properties")).status).toBe(404);
    expect((await served(ts, "/API/V1/properties")).headers["content-type"]).toBe("text/html; charset=utf-8");
    const none = await startServer();
    const page = await served(none, "/");
    expect({ status: page.status, type: page.headers["content-type"] }).toEqual({ status: 404, type: "text/html; charset=utf-8" });
  });

  it("the Host allow-list applies to pages too (the envelope's error 9 before anything else)", async () => {
    const ts = await startServer({ server: { wwwDir: join(CONFIG_DIR, "www"), allowedHosts: ["device.test"] } });
    expect((await rawOnce(ts.port, "GET / HTTP/1.1\r\nHost: device.test\r\n\r\n")).status).toBe(200);
    expectFailure(await rawOnce(ts.port, "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"), 9);
    expectFailure(await rawOnce(ts.port, `GET /ro/ HTTP/1.1\r\nHost: evil.example\r\nAuthorization: ${RO}\r\n\r\n`), 9);
  });
});
