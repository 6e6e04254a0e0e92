// The I/O points of the ro and rw folders: every point's name, value with unit, error and time of
// last change, refreshed by polling the REST API. On the rw page, each point also gets its controls:
// switch a digital output, set an analog output, rename the point and set its unit.
import { api, h, isSealedKey, keysForm, kindOf, KIND_NAMES, meta, say, sessionKeys, timeText, valueText } from "/common.js";

const POLL_MS = 2000;
/** The process document (names, units) is read again every this many polls, to see renames. */
const PROCESS_EVERY = 5;

const writable = document.body.dataset.mode === "rw";
const keys = {
  process: { rd: meta("apikeyd:process-rd"), wr: meta("apikeyd:process-wr") },
  data: { rd: meta("apikeyd:data-rd"), wr: meta("apikeyd:data-wr") },
};
// A sealed device (docs/api.md §9) cannot give this page its keys: the server-side includes echo
// `sealed:<fingerprint>`. The keys entered in this tab are used instead.
const sealed = Object.values(keys).some((k) => isSealedKey(k.rd) || isSealedKey(k.wr));
const list = document.getElementById("points");
const pageStatus = document.getElementById("page-status");
const liveStatus = document.getElementById("live-status");

let process = null;
let processText = "";
/** Per point: the elements a poll updates. */
let cards = [];
let polls = 0;

async function loadProcess() {
  const result = await api("GET", "/api/v1/process", keys.process);
  if (!result.ok) {
    say(pageStatus, { ok: false, text: "Cannot read the points: " + result.text });
    return;
  }
  const text = JSON.stringify(result.data);
  if (text === processText) return;
  processText = text;
  process = result.data;
  build();
}

function build() {
  const entries = process && Array.isArray(process.entries) ? process.entries : [];
  const old = cards;
  cards = entries.map((entry, i) => card(entry, i));
  // A rename rebuilds the cards: each keeps the answer it was showing.
  cards.forEach((c, i) => {
    if (old[i] === undefined) return;
    c.status.textContent = old[i].status.textContent;
    c.status.className = old[i].status.className;
    if (old[i].entry !== undefined) show(c, old[i].entry);
  });
  list.replaceChildren(...cards.map((c) => c.root));
}

function card(entry, i) {
  const kind = kindOf(entry);
  const c = {
    kind,
    unit: typeof entry.unit === "string" ? entry.unit : "",
    value: h("div", { className: "value" }, "–"),
    error: h("span", {}, ""),
    time: h("span", {}, ""),
    status: h("div", { className: "status", role: "status" }),
    toggle: null,
    analog: null,
  };
  c.root = h(
    "article",
    { className: "point", dataset: { index: String(i), kind } },
    h("div", { className: "name" }, String(entry.name ?? "")),
    h("div", { className: "kind" }, `${KIND_NAMES[kind] || "point"} · pin ${entry.pin ?? "?"}`),
    c.value,
    h("div", { className: "meta" }, c.error, " · changed ", c.time),
  );
  if (writable) addControls(c, entry, i);
  c.root.append(c.status);
  return c;
}

function addControls(c, entry, i) {
  const dataPath = `/api/v1/data/entries/${i}`;
  if (c.kind === "Do") {
    c.toggle = h("button", { type: "button", className: "toggle" }, "Switch");
    c.toggle.addEventListener("click", async () => {
      const next = c.toggle.dataset.next === "true";
      c.toggle.disabled = true;
      const result = await api("PUT", dataPath, keys.data, { pin: String(next) });
      c.toggle.disabled = false;
      say(c.status, result.ok ? { ok: true, text: `Switched ${next ? "on" : "off"}.` } : result);
      if (result.ok) show(c, result.data);
    });
    c.root.append(c.toggle);
  }
  if (c.kind === "Ao") {
    const input = h("input", { type: "number", step: "any", name: "pin", required: true, inputMode: "decimal" });
    c.analog = input;
    const form = h("form", { className: "set-output" }, h("label", {}, "New value", input), h("button", { type: "submit" }, "Set"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const result = await api("PUT", dataPath, keys.data, { pin: input.value });
      say(c.status, result.ok ? { ok: true, text: "Output set." } : result);
      if (result.ok) show(c, result.data);
    });
    c.root.append(form);
  }
  const name = h("input", { type: "text", name: "name", value: String(entry.name ?? ""), maxLength: 255 });
  const fields = [h("label", {}, "Name", name)];
  let unit = null;
  if (typeof entry.unit === "string") {
    unit = h("input", { type: "text", name: "unit", value: entry.unit, maxLength: 255 });
    fields.push(h("label", {}, "Unit", unit));
  }
  const form = h("form", { className: "rename" }, ...fields, h("button", { type: "submit", className: "secondary" }, "Save"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { name: name.value };
    if (unit !== null) body.unit = unit.value;
    const result = await api("PUT", `/api/v1/process/entries/${i}`, keys.process, body);
    say(c.status, result.ok ? { ok: true, text: "Saved." } : result);
    if (result.ok) await loadProcess();
  });
  c.root.append(form);
}

/** Shows one data entry in its card. */
function show(c, entry) {
  if (!entry || typeof entry !== "object") return;
  c.entry = entry;
  c.value.textContent = valueText(entry.pin, c.unit);
  c.error.textContent = entry.error ? `fault ${entry.error}` : "no fault";
  c.error.className = entry.error ? "fault" : "";
  c.time.textContent = timeText(entry.time);
  if (c.toggle !== null) {
    c.toggle.dataset.next = String(!entry.pin);
    c.toggle.textContent = entry.pin ? "Switch off" : "Switch on";
  }
}

async function poll() {
  polls++;
  if (process === null || polls % PROCESS_EVERY === 0) await loadProcess();
  const result = await api("GET", "/api/v1/data", keys.data);
  if (!result.ok) {
    say(liveStatus, { ok: false, text: "Live values stopped: " + result.text });
  } else {
    const entries = Array.isArray(result.data.entries) ? result.data.entries : [];
    cards.forEach((c, i) => show(c, entries[i]));
    liveStatus.textContent = `Live: refreshed ${new Date().toLocaleTimeString()}`;
    liveStatus.className = "live";
  }
  setTimeout(poll, POLL_MS);
}

/** On a sealed device: the session's keys, or a form asking for them first. */
function start() {
  if (!sealed) return poll();
  const known = { process: sessionKeys("process"), data: sessionKeys("data") };
  // A side the device shows as "" is open: no key needed. A write key only on the rw page.
  const needs = (name, side) => (side === "rd" || writable) && isSealedKey(keys[name][side]);
  const complete = (name) => ["rd", "wr"].every((side) => !needs(name, side) || (known[name] !== undefined && known[name][side] !== ""));
  if (complete("process") && complete("data")) {
    for (const name of ["process", "data"]) for (const side of ["rd", "wr"]) if (needs(name, side)) keys[name][side] = known[name][side];
    return poll();
  }
  liveStatus.textContent = "This device is sealed.";
  const form = keysForm(
    "sealed-keys",
    ["data", "process"],
    writable ? "rd+wr" : "rd",
    "This device is sealed: it keeps digests of its keys only and cannot give this page the keys of the data and process pairs. " +
      "Enter them (from the provisioning output file, or as the su page showed them); they are kept in this browser tab only, until it closes.",
    () => {
      form.remove();
      start();
    },
  );
  list.before(form);
}

start();
