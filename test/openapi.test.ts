/**
 * docs/openapi.yaml tells the truth. It is a valid OpenAPI 3.1 file; it has paths for every factory
 * endpoint, one schema per catalogue error under that error's HTTP status, and PUT bodies that say
 * what device-config/schema/mkc.json says; and the real server's answers, successes and failures,
 * match the schema the file documents for that operation and status.
 */

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Validator } from "@seriousme/openapi-schema-validator";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import { parseDocument } from "yaml";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { DEFAULT_THROTTLE } from "../src/access/throttle.ts";
import { CATALOGUE } from "../src/http/errors.ts";
import { FaultFs } from "./fault-fs.ts";
import { call, cleanup, closeAgents, CONFIG_DIR, ROOT_DIR, startServer, type Answer, type CallOptions, type TestServer } from "./helpers.ts";

afterEach(cleanup);
afterAll(closeAgents);

type Obj = Record<string, unknown>;

const SPEC_TEXT = readFileSync(join(ROOT_DIR, "docs", "openapi.yaml"), "utf8");
const SPEC_DOC = parseDocument(SPEC_TEXT); // duplicate keys are errors, not silently the last
const SPEC = SPEC_DOC.toJS() as Obj;
const SPEC_ID = "urn:apikeyd:openapi";
const PATHS = SPEC["paths"] as Record<string, Obj>;
const MKC = JSON.parse(readFileSync(join(CONFIG_DIR, "schema", "mkc.json"), "utf8")) as {
  types: Record<string, { writable: Record<string, string | { kind: string; min?: number; max?: number }> }>;
};
const ENDPOINTS = readdirSync(CONFIG_DIR)
  .filter((f) => f.endsWith(".json"))
  .map((f) => f.slice(0, -".json".length));
const MAX_SAFE = 9007199254740991;

const PROPERTIES = { rd: "rdKey1", wr: "wrKey1" };
const APIKEYS = { rd: "rdKey2", wr: "wrKey2" };
const ACCOUNTS = { httpro: { rd: "rdKey3", wr: "wrKey3" }, httprw: { rd: "rdKey4", wr: "wrKey4" }, httpsu: { rd: "rdKey5", wr: "wrKey5" } };
const PROCESS = { rd: "rdKey6", wr: "wrKey6" };
const DATA = { rd: "rdKey7", wr: "wrKey7" };
const READ_KEYS: Record<string, CallOptions> = { device: {}, properties: PROPERTIES, apikeys: APIKEYS, ...ACCOUNTS, process: PROCESS, data: DATA };

function obj(v: unknown, where: string): Obj {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error(`${where}: not an object`);
  return v as Obj;
}

/** The value at a local JSON pointer (`#/components/...`) of the file. */
function at(pointer: string): unknown {
  let v: unknown = SPEC;
  for (const raw of pointer.replace(/^#\//, "").split("/")) {
    v = obj(v, pointer)[raw.replace(/~1/g, "/").replace(/~0/g, "~")];
    if (v === undefined) throw new Error(`${pointer} does not resolve`);
  }
  return v;
}

/** Follows `$ref`s (local ones only, as in the file) to the object and the pointer it lives at. */
function deref(v: unknown, pointer: string): { value: Obj; pointer: string } {
  let value = obj(v, pointer);
  while (typeof value["$ref"] === "string") {
    pointer = value["$ref"];
    value = obj(at(pointer), pointer);
  }
  return { value, pointer };
}

function escapePointer(segment: string): string {
  return segment.replace(/~/g, "~0").replace(/\//g, "~1");
}

/**
 * The file's schemas leave objects open (a newer type revision may add members, and clients must
 * ignore them), but this device's answers must hold exactly the members the file lists: the copy
 * the live answers are checked against closes every object that lists its properties.
 */
function closeObjects(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(closeObjects);
  if (typeof v !== "object" || v === null) return v;
  const out: Obj = {};
  for (const [k, child] of Object.entries(v)) out[k] = closeObjects(child);
  if (typeof out["properties"] === "object" && out["type"] === "object" && !("additionalProperties" in out)) out["additionalProperties"] = false;
  return out;
}

// Formats are annotations here: the file's patterns say what the server checks.
const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true, validateFormats: false });
// The OpenAPI document is registered whole, so that its own "#/components/..." references resolve;
// its top-level members and the OpenAPI-only `discriminator` are annotations to ajv.
for (const keyword of ["openapi", "info", "servers", "security", "tags", "paths", "components", "discriminator"]) ajv.addKeyword(keyword);
ajv.addSchema({ ...(closeObjects(SPEC) as Obj), $id: SPEC_ID });
const compiled = new Map<string, ValidateFunction>();

/** A validator for the schema at a pointer of the file (compiled once). */
function schemaAt(pointer: string): ValidateFunction {
  let validate = compiled.get(pointer);
  if (validate === undefined) {
    // In a URI fragment the pointer's segments are percent-encoded (`{path}` is `%7Bpath%7D`).
    validate = ajv.compile({ $ref: `${SPEC_ID}#/${pointer.replace(/^#\//, "").split("/").map(encodeURIComponent).join("/")}` });
    compiled.set(pointer, validate);
  }
  return validate;
}

function expectValid(pointer: string, value: unknown, context: string): void {
  const validate = schemaAt(pointer);
  const valid = validate(value);
  expect(valid, `${context}: ${JSON.stringify(value)} against ${pointer}: ${ajv.errorsText(validate.errors)}`).toBe(true);
}

/** The path template of the file that a request path falls under, the most literal one first (as OpenAPI matches). */
function templateOf(path: string): string | undefined {
  let best: { template: string; literal: number } | undefined;
  for (const template of Object.keys(PATHS)) {
    const pattern = template
      .split(/(\{[^}]+\})/)
      .map((part) => (part === "{path}" ? ".+" : part.startsWith("{") ? "[^/]+" : part.replace(/[.*+?^$()|[\]\\]/g, "\\$&")))
      .join("");
    if (!new RegExp(`^${pattern}$`).test(path)) continue;
    const literal = template.replace(/\{[^}]+\}/g, "").length;
    if (best === undefined || literal > best.literal) best = { template, literal };
  }
  return best?.template;
}

/**
 * Checks an answer against the file: the operation the request falls under must document its
 * status, and the body and the required headers must match that response. Requests no operation
 * covers (another method, a path outside /api/v1/) name the component response that documents them.
 */
function expectDocumented(method: string, path: string, answer: Answer, component?: string): void {
  const context = `${method} ${path} answered ${answer.status} ${answer.text}`;
  let response: { value: Obj; pointer: string };
  if (component !== undefined) {
    response = deref(at(`#/components/responses/${component}`), `#/components/responses/${component}`);
  } else {
    const template = templateOf(path.split("?")[0] as string);
    expect(template, `${context}: no path of the file matches`).toBeDefined();
    const opPointer = `#/paths/${escapePointer(template as string)}/${method.toLowerCase()}`;
    const operation = obj(at(opPointer), context);
    const responses = obj(operation["responses"], opPointer);
    const documented = responses[String(answer.status)] ?? (method === "HEAD" ? responses["default"] : undefined);
    expect(documented, `${context}: status not documented for ${opPointer}`).toBeDefined();
    response = deref(documented, `${opPointer}/responses/${answer.status}`);
  }
  if (method === "HEAD") {
    expect(answer.text, context).toBe("");
  } else {
    expect(answer.headers["content-type"], context).toBe("application/json");
    const content = obj(response.value["content"], `${response.pointer}: content`);
    expect(Object.keys(content), response.pointer).toEqual(["application/json"]);
    expectValid(`${response.pointer}/content/application~1json/schema`, JSON.parse(answer.text), context);
  }
  const headers = (response.value["headers"] ?? {}) as Record<string, Obj>;
  for (const [name, header] of Object.entries(headers)) {
    const sent = answer.headers[name.toLowerCase()];
    if (header["required"] === true) expect(sent, `${context}: header ${name}`).toBeDefined();
    if (sent === undefined) continue;
    const schema = obj(header["schema"], name);
    const value = schema["type"] === "integer" ? Number(sent) : sent;
    expectValid(`${response.pointer}/headers/${escapePointer(name)}/schema`, value, `${context}: header ${name}`);
  }
}

/** The pointer of the JSON body schema of the PUT at a path template. */
function putBodySchema(template: string): string {
  const opPointer = `#/paths/${escapePointer(template)}/put`;
  const body = deref(obj(at(opPointer), opPointer)["requestBody"], `${opPointer}/requestBody`);
  return `${body.pointer}/content/application~1json/schema`;
}

/** Sends a request and checks the answer against the file; returns it for further checks. */
async function documented(ts: TestServer, method: string, path: string, options: CallOptions = {}, component?: string): Promise<Answer> {
  const answer = await call(ts, method, path, options);
  expectDocumented(method, path, answer, component);
  return answer;
}

/** The catalogue codes a schema can answer (every `meta.error` const reachable from it). */
function codesOf(schema: unknown, pointer: string, seen = new Set<string>()): Set<number> {
  const codes = new Set<number>();
  const walk = (v: unknown, where: string): void => {
    if (Array.isArray(v)) return v.forEach((item, i) => walk(item, `${where}/${i}`));
    if (typeof v !== "object" || v === null) return;
    const o = v as Obj;
    if (typeof o["$ref"] === "string") {
      if (seen.has(o["$ref"])) return;
      seen.add(o["$ref"]);
      return walk(at(o["$ref"]), o["$ref"]);
    }
    const meta = (o["properties"] as Obj | undefined)?.["meta"];
    if (meta !== undefined) {
      const error = (deref(meta, where).value["properties"] as Obj | undefined)?.["error"] as Obj | undefined;
      if (typeof error?.["const"] === "number") codes.add(error["const"]);
    }
    for (const [k, child] of Object.entries(o)) if (k !== "properties") walk(child, `${where}/${k}`);
  };
  walk(schema, pointer);
  return codes;
}

/** Every (operation, status, response) of the file. */
function* operations(): Generator<{ where: string; status: string; response: { value: Obj; pointer: string } }> {
  for (const [template, item] of Object.entries(PATHS)) {
    for (const method of ["get", "head", "put"]) {
      const operation = item[method] as Obj | undefined;
      if (operation === undefined) continue;
      for (const [status, response] of Object.entries(obj(operation["responses"], template))) {
        yield { where: `${method.toUpperCase()} ${template}`, status, response: deref(response, `${template} ${status}`) };
      }
    }
  }
}

describe("the file", () => {
  it("is well-formed YAML and a valid OpenAPI 3.1 description whose references all resolve", async () => {
    expect(SPEC_DOC.errors.map((e) => e.message)).toEqual([]);
    expect(SPEC_DOC.warnings.map((e) => e.message)).toEqual([]);
    expect(SPEC["openapi"]).toMatch(/^3\.1\.\d+$/);
    const pkg = JSON.parse(readFileSync(join(ROOT_DIR, "package.json"), "utf8")) as { version: string };
    expect(obj(SPEC["info"], "info")["version"]).toBe(pkg.version);
    const validator = new Validator();
    const result = await validator.validate(structuredClone(SPEC));
    expect(result.errors).toBeUndefined();
    expect(result.valid).toBe(true);
    expect(validator.version).toBe("3.1");
    expect(() => validator.resolveRefs()).not.toThrow();
    // Every schema compiles under JSON Schema 2020-12 in ajv's strict mode (no unknown keyword, no typo).
    for (const name of Object.keys(obj(at("#/components/schemas"), "schemas"))) schemaAt(`#/components/schemas/${name}`);
  });

  it("names each operation once (client generators make method names of them)", () => {
    const ids = [...Object.values(PATHS)].flatMap((item) =>
      ["get", "head", "put"].flatMap((method) => ((item[method] as Obj | undefined)?.["operationId"] as string | undefined) ?? []),
    );
    expect(ids.length).toBe(Object.values(PATHS).reduce((n, item) => n + ["get", "head", "put"].filter((m) => m in item).length, 0));
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("says nothing outside the repository: it links to api.md only", () => {
    expect(SPEC_TEXT).not.toMatch(/SPEC|\.\.\/shared|§/);
  });

  it("has GET and HEAD of the whole document and of sub-paths for every factory endpoint, and PUT on every keyed one", () => {
    expect(ENDPOINTS.length).toBeGreaterThan(0);
    for (const endpoint of ENDPOINTS) {
      const whole = PATHS[`/api/v1/${endpoint}`];
      const sub = PATHS[`/api/v1/${endpoint}/{path}`];
      expect(whole, endpoint).toBeDefined();
      expect(sub, endpoint).toBeDefined();
      for (const item of [whole, sub]) expect(Object.keys(item as Obj), endpoint).toEqual(expect.arrayContaining(["get", "head"]));
      if (endpoint === "device") {
        expect((sub as Obj)["put"]).toBeUndefined();
        continue;
      }
      expect((sub as Obj)["put"], endpoint).toBeDefined();
    }
  });

  it("guards every endpoint but device with its key headers: reads need ApiRdKey, writes ApiRdKey and ApiWrKey", () => {
    expect(at("#/components/securitySchemes/ApiRdKey")).toEqual(expect.objectContaining({ type: "apiKey", in: "header", name: "ApiRdKey" }));
    expect(at("#/components/securitySchemes/ApiWrKey")).toEqual(expect.objectContaining({ type: "apiKey", in: "header", name: "ApiWrKey" }));
    expect(SPEC["security"]).toEqual([{ ApiRdKey: [] }]);
    for (const [template, item] of Object.entries(PATHS)) {
      for (const method of ["get", "head", "put"]) {
        const operation = item[method] as Obj | undefined;
        if (operation === undefined) continue;
        const expected = template.startsWith("/api/v1/device") ? [] : method === "put" ? [{ ApiRdKey: [], ApiWrKey: [] }] : undefined;
        expect(operation["security"], `${method} ${template}`).toEqual(expected);
      }
    }
  });

  it("has one error schema per catalogue entry, with its code and message, and ErrorEnvelope lists exactly them", () => {
    const listed = (obj(at("#/components/schemas/ErrorEnvelope"), "ErrorEnvelope")["oneOf"] as Obj[]).map((ref) => {
      const meta = obj(obj(deref(ref, "ErrorEnvelope").value["properties"], "properties")["meta"], "meta");
      const properties = obj(meta["properties"], "meta.properties");
      return { code: obj(properties["error"], "error")["const"], message: obj(properties["message"], "message")["const"] };
    });
    expect(listed).toEqual(CATALOGUE.filter((e) => e.code !== 0).map(({ code, message }) => ({ code, message })));
    expect(at("#/components/schemas/MetaOk")).toEqual(expect.objectContaining({ properties: { error: { const: 0 }, message: { const: "JSON_ERROR_NONE" } } }));
  });

  it("documents every catalogue code under its own HTTP status, and no code under another", () => {
    const seen = new Set<number>();
    for (const { where, status, response } of operations()) {
      const content = response.value["content"] as Obj | undefined;
      if (content === undefined) continue; // HEAD: no body
      for (const code of codesOf(content, response.pointer)) {
        const entry = CATALOGUE.find((e) => e.code === code);
        expect(entry, `${where} ${status}: code ${code}`).toBeDefined();
        expect(String(entry?.status), `${where}: code ${code} documented under ${status}`).toBe(status);
        seen.add(code);
      }
    }
    expect([...seen].sort((a, b) => a - b)).toEqual(CATALOGUE.map((e) => e.code));
    // The responses no operation covers (another method, a path outside /api/v1/) carry the status's codes.
    expect([...codesOf(at("#/components/responses/MethodNotAllowed"), "405")]).toEqual([5]);
    expect([...codesOf(at("#/components/responses/EndpointNotFound"), "404")]).toEqual([2]);
  });

  it("describes each type's writable members with the kind and range of device-config/schema/mkc.json, and marks every other member read-only", () => {
    const KIND_SCHEMA: Record<string, string> = { string: "String", key: "Key", ipv4: "IPv4", port: "Port", boolean: "BooleanValue", number: "Number", label: "Label", expires: "Expires", origins: "Origins" };
    for (const [typeName, { writable }] of Object.entries(MKC.types)) {
      const short = typeName.replace(/^MkcJsonLib\./, "");
      const write = obj(at(`#/components/schemas/${short}Write`), `${short}Write`);
      const writeProps = obj(write["properties"], `${short}Write`);
      expect(Object.keys(writeProps).sort(), short).toEqual(Object.keys(writable).sort());
      expect(write["additionalProperties"], short).toBe(false);
      for (const [member, rawRule] of Object.entries(writable)) {
        const rule = typeof rawRule === "string" ? { kind: rawRule } : rawRule;
        const ref = obj(writeProps[member], `${short}.${member}`)["$ref"];
        if (rule.kind === "integer") {
          const schema = deref(writeProps[member], `${short}.${member}`).value;
          expect({ type: schema["type"], min: schema["minimum"], max: schema["maximum"] }, `${short}.${member}`).toEqual({
            type: "integer",
            min: rule.min ?? -MAX_SAFE,
            max: rule.max ?? MAX_SAFE,
          });
        } else {
          expect(ref, `${short}.${member}`).toBe(`#/components/schemas/${KIND_SCHEMA[rule.kind] ?? "?"}`);
        }
      }
      const read = obj(obj(at(`#/components/schemas/${short}`), short)["properties"], short);
      for (const [member, schema] of Object.entries(read)) {
        const readOnly = obj(schema, member)["readOnly"] === true || deref(schema, member).value["readOnly"] === true;
        expect(readOnly, `${short}.${member} readOnly`).toBe(!(member in writable));
      }
    }
  });
});

describe("the kinds of values, as the server checks them", () => {
  // Each value is sent to the server as JSON; the file's request schema must accept exactly the ones the server accepts.
  const CASES: ReadonlyArray<[string, string, CallOptions, Obj, boolean]> = [
    ["String: 255 characters", "/api/v1/properties", PROPERTIES, { name: "n".repeat(255) }, true],
    ["String: 256 characters", "/api/v1/properties", PROPERTIES, { name: "n".repeat(256) }, false],
    ["String: a line break", "/api/v1/properties", PROPERTIES, { name: "a\nb" }, false],
    ["String: empty", "/api/v1/properties/mqtt", PROPERTIES, { user: "" }, true],
    ["Key: 128 printable characters", "/api/v1/apikeys/keys/6", APIKEYS, { rd: "~".repeat(128) }, true],
    ["Key: 129 characters", "/api/v1/apikeys/keys/6", APIKEYS, { rd: "k".repeat(129) }, false],
    ["Key: a space", "/api/v1/apikeys/keys/6", APIKEYS, { wr: "a b" }, false],
    ["Key: non-ASCII", "/api/v1/apikeys/keys/6", APIKEYS, { wr: "schlüssel" }, false],
    ["Key: empty", "/api/v1/apikeys/keys/6", APIKEYS, { wr: "" }, true],
    ["IPv4: 255.255.255.255", "/api/v1/properties/sntpEntries/0", PROPERTIES, { address: "255.255.255.255" }, true],
    ["IPv4: a leading zero", "/api/v1/properties/sntpEntries/0", PROPERTIES, { address: "192.168.01.1" }, false],
    ["IPv4: 256", "/api/v1/properties/sntpEntries/0", PROPERTIES, { address: "192.168.1.256" }, false],
    ["Port: 65535", "/api/v1/properties/mqtt", PROPERTIES, { port: 65535 }, true],
    ["Port: 0", "/api/v1/properties/mqtt", PROPERTIES, { port: 0 }, false],
    ["Port: a string", "/api/v1/properties/mqtt", PROPERTIES, { port: "1883" }, false],
    ["keepalive: 65536", "/api/v1/properties/mqtt", PROPERTIES, { keepalive: 65536 }, false],
    ["boolean: 1", "/api/v1/properties/mqtt", PROPERTIES, { enable: 1 }, true],
    ["boolean: 2", "/api/v1/properties/mqtt", PROPERTIES, { enable: 2 }, false],
    ["boolean: a string", "/api/v1/properties/mqtt", PROPERTIES, { enable: "true" }, false],
    ["shift: 31", "/api/v1/process/entries/0", PROCESS, { shift: 31 }, true],
    ["shift: 32", "/api/v1/process/entries/3", PROCESS, { shift: 32 }, false],
    ["hysteresis: -1", "/api/v1/process/entries/0", PROCESS, { hysteresis: -1 }, false],
    ["pulse: 1.5", "/api/v1/process/entries/2", PROCESS, { pulse: 1.5 }, false],
    ["number: -0.25", "/api/v1/data/entries/1", DATA, { pin: -0.25 }, true],
    ["number: a string", "/api/v1/data/entries/1", DATA, { pin: "1" }, false],
  ];

  it.each(CASES)("%s", async (_name, path, keys, body, accepted) => {
    const ts = await startServer();
    const template = templateOf(path) as string;
    expect(schemaAt(putBodySchema(template))(body), `the file's ${template} PUT body schema for ${JSON.stringify(body)}`).toBe(accepted);
    const answer = await documented(ts, "PUT", path, { ...keys, body });
    expect({ status: answer.status, error: answer.json?.meta.error }).toEqual(accepted ? { status: 200, error: 0 } : { status: 400, error: 8 });
  });
});

describe("the live server answers as the file says", () => {
  it("GET and HEAD of every endpoint's whole document, with its key", async () => {
    const ts = await startServer();
    for (const endpoint of ENDPOINTS) {
      const keys = READ_KEYS[endpoint];
      expect(keys, `keys for ${endpoint}`).toBeDefined();
      const get = await documented(ts, "GET", `/api/v1/${endpoint}`, keys);
      expect(get.json?.meta.error, endpoint).toBe(0);
      const head = await documented(ts, "HEAD", `/api/v1/${endpoint}`, keys);
      expect({ status: head.status, length: head.headers["content-length"] }).toEqual({ status: 200, length: String(Buffer.byteLength(get.text)) });
    }
  });

  it("GET and HEAD of sub-paths, explicit and generic", async () => {
    const ts = await startServer();
    const reads: Array<[string, CallOptions]> = [
      ["/api/v1/device/0", {}],
      ["/api/v1/device/0/board/pcb/name", {}],
      ["/api/v1/properties/name", PROPERTIES],
      ["/api/v1/properties/networkInterfaces/0", PROPERTIES],
      ["/api/v1/properties/networkInterfaces/0/hostEntries/0", PROPERTIES],
      ["/api/v1/properties/networkInterfaces/0/hostEntries/0/address", PROPERTIES],
      ["/api/v1/properties/sntpEntries/0", PROPERTIES],
      ["/api/v1/properties/mqtt", PROPERTIES],
      ["/api/v1/properties/mqtt/port", PROPERTIES],
      ...[0, 1, 2, 3, 4, 5, 6].map((i): [string, CallOptions] => [`/api/v1/apikeys/keys/${i}`, APIKEYS]),
      ["/api/v1/apikeys/keys", APIKEYS],
      ["/api/v1/httpro/name", ACCOUNTS.httpro],
      ["/api/v1/httprw/pass", ACCOUNTS.httprw],
      ["/api/v1/httpsu/Json%2BtypeName", ACCOUNTS.httpsu],
      ...[0, 1, 2, 3].map((i): [string, CallOptions] => [`/api/v1/process/entries/${i}`, PROCESS]),
      ["/api/v1/process/entries/0/unit", PROCESS],
      ...[0, 1, 2, 3].map((i): [string, CallOptions] => [`/api/v1/data/entries/${i}`, DATA]),
      ["/api/v1/data/Json%2BtypeRevision", DATA],
    ];
    for (const [path, keys] of reads) {
      const get = await documented(ts, "GET", path, keys);
      expect(get.json?.meta.error, path).toBe(0);
      await documented(ts, "HEAD", path, keys);
    }
  });

  it("a path that does not exist in an endpoint: 200 with error 1", async () => {
    const ts = await startServer();
    for (const [path, keys] of [
      ["/api/v1/properties/nothing", PROPERTIES],
      ["/api/v1/properties/networkInterfaces/1", PROPERTIES],
      ["/api/v1/properties/networkInterfaces/0/hostEntries/01", PROPERTIES],
      ["/api/v1/apikeys/keys/7", APIKEYS],
      ["/api/v1/process/entries/4", PROCESS],
      ["/api/v1/data/entries/9", DATA],
      ["/api/v1/device/1", {}],
    ] as const) {
      const answer = await documented(ts, "GET", path, keys);
      expect({ status: answer.status, error: answer.json?.meta.error }, path).toEqual({ status: 200, error: 1 });
    }
    const put = await documented(ts, "PUT", "/api/v1/apikeys/keys/7", { ...APIKEYS, body: "rd=x" });
    expect({ status: put.status, error: put.json?.meta.error }).toEqual({ status: 200, error: 1 });
  });

  it("successful PUTs of every writable object, as a form and as JSON", async () => {
    const ts = await startServer();
    const writes: Array<[string, CallOptions, string, Obj]> = [
      ["/api/v1/properties", PROPERTIES, "name=test+device", { name: "eNetMini2" }],
      ["/api/v1/properties/name", PROPERTIES, "name=leaf", { name: "leaf2" }],
      ["/api/v1/properties/networkInterfaces/0", PROPERTIES, "domain=example.net", { domain: "example.org" }],
      [
        "/api/v1/properties/networkInterfaces/0/hostEntries/0",
        PROPERTIES,
        "dhcp=1&address=192.168.15.101&mask=255.255.0.0&gateway=192.168.15.1&dns=192.168.15.2",
        { dhcp: false, address: "10.0.0.2", mask: "255.0.0.0", gateway: "10.0.0.1", dns: "10.0.0.53" },
      ],
      ["/api/v1/properties/sntpEntries/0", PROPERTIES, "address=192.168.15.91&enable=true", { address: "192.168.15.92", enable: 0 }],
      [
        "/api/v1/properties/mqtt",
        PROPERTIES,
        "root=plant&enable=1&address=192.168.15.93&port=8883&keepalive=0&user=u&pass=p%26w",
        { root: "plant2", enable: false, address: "192.168.15.94", port: 1, keepalive: 65535, user: "", pass: "pw" },
      ],
      ["/api/v1/httpro", ACCOUNTS.httpro, "name=ro&pass=s3cret", { name: "ro2", pass: "" }],
      ["/api/v1/httprw", ACCOUNTS.httprw, "pass=rw", { name: "rw2" }],
      ["/api/v1/httpsu", ACCOUNTS.httpsu, "name=su", { pass: "su2" }],
      ["/api/v1/process", PROCESS, "name=plant", { name: "plant2" }],
      ["/api/v1/process/entries/0", PROCESS, "name=AIN2&unit=V&shift=31&hysteresis=5&format=0%3A10", { name: "AIN3", unit: "mV", shift: 0, hysteresis: 0, format: "0:5" }],
      ["/api/v1/process/entries/1", PROCESS, "name=PWM&unit=%25&format=0%3A1", { unit: "permille" }],
      ["/api/v1/process/entries/2", PROCESS, "name=RELAY2&pulse=0&save=0", { pulse: 100, save: true }],
      ["/api/v1/process/entries/3", PROCESS, "name=GPIO&shift=0", { shift: 5 }],
      ["/api/v1/data/entries/1", DATA, "pin=12.5", { pin: 1e3 }],
      ["/api/v1/data/entries/2", DATA, "pin=false", { pin: 1 }],
      ["/api/v1/data/entries/1/pin", DATA, "pin=-3", { pin: 0.5 }],
      // Keys last: the pair of `data` changes, then the apikeys pair itself.
      ["/api/v1/apikeys/keys/6", APIKEYS, "rd=new%2Brd&wr=new-wr", { rd: "rdKey7", wr: "wrKey7" }],
      ["/api/v1/apikeys/keys/1", APIKEYS, "wr=wrKey2", { rd: "rdKey2" }],
    ];
    for (const [path, keys, form, json] of writes) {
      const template = templateOf(path) as string;
      expectValid(putBodySchema(template), json, `JSON body of PUT ${path}`);
      for (const body of [form, json]) {
        const answer = await documented(ts, "PUT", path, { ...keys, body });
        expect({ status: answer.status, error: answer.json?.meta.error }, `PUT ${path} ${JSON.stringify(body)}`).toEqual({ status: 200, error: 0 });
      }
      await documented(ts, "GET", path, keys);
    }
  });

  it("401 and 403: a missing or wrong key", async () => {
    const ts = await startServer();
    const from = { localAddress: "127.0.0.71" }; // wrong keys are counted per address; 4 stay under the throttle
    expect((await documented(ts, "GET", "/api/v1/properties", from)).status).toBe(401);
    expect((await documented(ts, "GET", "/api/v1/apikeys/keys/0", { ...from, rd: "guess" })).status).toBe(401);
    expect((await documented(ts, "HEAD", "/api/v1/process", from)).status).toBe(401);
    expect((await documented(ts, "PUT", "/api/v1/properties/mqtt", { ...from, rd: "guess", wr: "wrKey1", body: "port=1" })).status).toBe(401);
    expect((await documented(ts, "PUT", "/api/v1/properties/mqtt", { ...from, rd: "rdKey1", body: "port=1" })).status).toBe(403);
    expect((await documented(ts, "PUT", "/api/v1/httpsu", { ...from, rd: "rdKey5", wr: "guess", body: { pass: "x" } })).status).toBe(403);
  });

  it("a sealed device: the sealing PUT, reads of sealed:<fingerprint>, generated keys, and unsealing refused (8)", async () => {
    const ts = await startServer();
    expectValid(putBodySchema("/api/v1/apikeys"), { sealed: true }, "the sealing body");
    expect(schemaAt(putBodySchema("/api/v1/apikeys"))({ keys: [] })).toBe(false);
    expect((await documented(ts, "PUT", "/api/v1/apikeys", { ...APIKEYS, body: "sealed=false" })).status).toBe(200);
    expect((await documented(ts, "PUT", "/api/v1/apikeys", { ...APIKEYS, body: { sealed: true } })).status).toBe(200);
    expect((await documented(ts, "GET", "/api/v1/apikeys", APIKEYS)).text).toContain('"rd":"sealed:');
    await documented(ts, "GET", "/api/v1/apikeys/keys/6", APIKEYS);
    const generated = await documented(ts, "PUT", "/api/v1/apikeys/keys/6", { ...APIKEYS, body: "rd=generate&wr=generate" });
    expect((generated.json?.data as Obj)["rd"]).toMatch(/^[A-Za-z0-9_-]{32}$/);
    const refused = await documented(ts, "PUT", "/api/v1/apikeys", { ...APIKEYS, body: "sealed=false" });
    expect([refused.status, refused.json?.meta.error]).toEqual([400, 8]);
    const short = await documented(ts, "PUT", "/api/v1/apikeys/keys/6", { ...APIKEYS, body: "rd=short" });
    expect([short.status, short.json?.meta.error]).toEqual([400, 8]);
  });

  it("401 with 16 and 403 with 17: a pair switched off, a client outside its origins; PUTs with grace and confirm", async () => {
    const ts = await startServer();
    const change = await documented(ts, "PUT", "/api/v1/apikeys/keys/6", { ...APIKEYS, body: { rd: "data-rd-openapi-1", grace: 60, confirm: 120, label: "x" } });
    expect(change.status).toBe(200);
    expectValid(putBodySchema("/api/v1/apikeys/keys/{index}"), { rd: "k", grace: 60, confirm: 120 }, "grace and confirm");
    expect(schemaAt(putBodySchema("/api/v1/apikeys/keys/{index}"))({ rd: "k", confirm: 9 })).toBe(false);
    expect((await documented(ts, "PUT", "/api/v1/apikeys/keys/5", { ...APIKEYS, body: "enabled=false&origins=127.0.0.80" })).status).toBe(200);
    const inactive = await documented(ts, "GET", "/api/v1/process", PROCESS);
    expect([inactive.status, inactive.json?.meta.error]).toEqual([401, 16]);
    expect((await documented(ts, "PUT", "/api/v1/apikeys/keys/5", { ...APIKEYS, body: "enabled=true" })).status).toBe(200);
    const outside = await documented(ts, "PUT", "/api/v1/process/name", { ...PROCESS, body: "name=x", localAddress: "127.0.0.81" });
    expect([outside.status, outside.json?.meta.error]).toEqual([403, 17]);
    expect((await documented(ts, "GET", "/api/v1/process/name", { ...PROCESS, localAddress: "127.0.0.80" })).status).toBe(200);
  });

  it("404: no such endpoint, or a path outside /api/v1/", async () => {
    const ts = await startServer();
    expect((await documented(ts, "GET", "/api/v1/nothing", PROPERTIES)).status).toBe(404);
    expect((await documented(ts, "GET", "/api/v1/nothing/name", PROPERTIES)).status).toBe(404);
    expect((await documented(ts, "PUT", "/api/v1/nothing", { ...PROPERTIES, body: "name=x" })).status).toBe(404);
    expect((await documented(ts, "GET", "/api/v2/properties", PROPERTIES, "EndpointNotFound")).status).toBe(404);
  });

  it("405: PUT on device, and any method but GET, HEAD and PUT, with Allow", async () => {
    const ts = await startServer();
    const device = await documented(ts, "PUT", "/api/v1/device", { body: "address=x" });
    expect({ status: device.status, allow: device.headers["allow"] }).toEqual({ status: 405, allow: "GET, HEAD" });
    for (const method of ["DELETE", "POST", "PATCH", "OPTIONS"]) {
      const answer = await documented(ts, method, "/api/v1/properties", PROPERTIES, "MethodNotAllowed");
      expect({ status: answer.status, allow: answer.headers["allow"] }).toEqual({ status: 405, allow: "GET, HEAD, PUT" });
    }
  });

  it("400: members not writable (6), unknown (7), invalid (8), and malformed requests (9)", async () => {
    const ts = await startServer();
    const cases: Array<[string, string, CallOptions, number]> = [
      ["PUT", "/api/v1/apikeys/keys/0", { ...APIKEYS, body: "name=x" }, 6],
      ["PUT", "/api/v1/properties/networkInterfaces", { ...PROPERTIES, body: "domain=x" }, 6],
      ["PUT", "/api/v1/process/entries/0", { ...PROCESS, body: { pin: "XB.1" } }, 6],
      ["PUT", "/api/v1/properties", { ...PROPERTIES, body: "nothing=1" }, 7],
      ["PUT", "/api/v1/properties/mqtt", { ...PROPERTIES, body: "port=0" }, 8],
      ["PUT", "/api/v1/apikeys/keys/6", { ...APIKEYS, body: "rd=a+b" }, 8],
      ["PUT", "/api/v1/properties", { ...PROPERTIES, body: "name" }, 9],
      ["PUT", "/api/v1/properties", { ...PROPERTIES, body: "name=a&name=b" }, 9],
      ["PUT", "/api/v1/properties", { ...PROPERTIES, body: '{"name":' }, 9],
      ["PUT", "/api/v1/properties/name", { ...PROPERTIES, body: "domain=x" }, 9],
      ["GET", "/api/v1/properties//name", PROPERTIES, 9],
      ["GET", "/api/v1/properties/%E0", PROPERTIES, 9],
    ];
    for (const [method, path, options, code] of cases) {
      const answer = await documented(ts, method, path, options);
      expect({ status: answer.status, error: answer.json?.meta.error }, `${method} ${path}`).toEqual({ status: 400, error: code });
    }
  });

  it("413 and 415: a body too large, or of another type", async () => {
    const ts = await startServer();
    const large = await documented(ts, "PUT", "/api/v1/properties", { ...PROPERTIES, body: `name=${"x".repeat(5000)}` });
    expect(large.status).toBe(413);
    const typed = await documented(ts, "PUT", "/api/v1/properties", { ...PROPERTIES, body: "name=x", contentType: "text/plain" });
    expect(typed.status).toBe(415);
  });

  it("429 with Retry-After once an address guessed too many keys", async () => {
    const ts = await startServer({ server: { throttle: { ...DEFAULT_THROTTLE, maxFailures: 2 } } });
    const from = { localAddress: "127.0.0.72" };
    for (let i = 0; i < 2; i++) expect((await documented(ts, "GET", "/api/v1/properties", { ...from, rd: `guess-${i}` })).status).toBe(401);
    const read = await documented(ts, "GET", "/api/v1/properties", { ...from, ...PROPERTIES });
    expect(read.status).toBe(429);
    expect((await documented(ts, "PUT", "/api/v1/process/entries/0", { ...from, ...PROCESS, body: "name=x" })).status).toBe(429);
    // device needs no key, and still answers.
    expect((await documented(ts, "GET", "/api/v1/device", from)).status).toBe(200);
  });

  it("431: a request target over the limit", async () => {
    const ts = await startServer();
    const answer = await documented(ts, "GET", `/api/v1/properties/${"a".repeat(1100)}`, PROPERTIES);
    expect(answer.status).toBe(431);
    expect((await documented(ts, "GET", `/api/v1/device/${"a".repeat(1100)}`)).status).toBe(431);
  });

  it("500: anything unforeseen", async () => {
    const ts = await startServer({
      server: {
        clock: () => {
          throw new Error("clock unreadable");
        },
      },
    });
    const answer = await documented(ts, "PUT", "/api/v1/data/entries/1", { ...DATA, body: "pin=1" });
    expect(answer.status).toBe(500);
  });

  it("503: a change that could not be made durable", async () => {
    const fs = new FaultFs();
    const ts = await startServer({ load: { fs } });
    fs.fail("rename", "EIO");
    const answer = await documented(ts, "PUT", "/api/v1/properties/mqtt", { ...PROPERTIES, body: { port: 8883 } });
    expect(answer.status).toBe(503);
    fs.clear();
  });
});
