// The su folder: the device's settings (name, network, time server, MQTT), the three accounts and
// the API key pairs. The page was given the apikeys document by the server-side includes; each form
// uses the pair of the endpoint it writes, and every answer is shown where the change was asked.
import { api, generateKey, h, meta, say } from "/common.js";

let apikeys;
try {
  apikeys = JSON.parse(meta("apikeyd:apikeys"));
} catch {
  apikeys = { keys: [] };
}
const pairs = Array.isArray(apikeys.keys) ? apikeys.keys : [];
const pageStatus = document.getElementById("page-status");
const settings = document.getElementById("settings");

/** The keys of a pair as this page knows them (updated after each rotation). */
function keysOf(name) {
  const pair = pairs.find((p) => p.name === name);
  return pair ? { rd: pair.rd, wr: pair.wr } : {};
}

/** Follows members and indexes into a document. */
function at(doc, path) {
  return path.reduce((v, k) => (v !== null && v !== undefined ? v[k] : undefined), doc);
}

/**
 * A form that PUTs its fields to one object. `fields`: [member, label, type] with type "text",
 * "number", "checkbox" or "password" (a password left empty is not sent).
 */
function objectForm(id, title, endpoint, path, doc, fields, note) {
  const status = h("div", { className: "status", role: "status" });
  const inputs = fields.map(([member, label, type]) => {
    const value = at(doc, [...path, member]);
    const input = h("input", { type, name: member, id: `${id}-${member}` });
    if (type === "checkbox") input.checked = value === true;
    else if (type === "password") input.placeholder = "unchanged";
    else input.value = value === undefined ? "" : String(value);
    const wrapper = type === "checkbox" ? h("label", { className: "check" }, input, label) : h("label", {}, label, input);
    return { member, type, input, wrapper };
  });
  const form = h("form", { id }, ...inputs.map((i) => i.wrapper), h("button", { type: "submit" }, "Save"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    for (const { member, type, input } of inputs) {
      if (type === "checkbox") body[member] = String(input.checked);
      else if (type === "password") {
        if (input.value !== "") body[member] = input.value;
      } else body[member] = input.value;
    }
    const result = await api("PUT", ["/api/v1", endpoint, ...path].join("/"), keysOf(endpoint), body);
    say(status, result.ok ? { ok: true, text: "Saved." } : result);
    if (result.ok) for (const i of inputs) if (i.type === "password") i.input.value = "";
  });
  return h("section", { className: "card", "aria-label": title }, h("h2", {}, title), note ? h("p", { className: "note" }, note) : null, form, status);
}

async function loadSettings() {
  const properties = await api("GET", "/api/v1/properties", keysOf("properties"));
  if (!properties.ok) {
    say(pageStatus, { ok: false, text: "Cannot read the settings: " + properties.text });
  } else {
    const p = properties.data;
    settings.append(
      objectForm("device-form", "Device", "properties", [], p, [["name", "Device name", "text"]]),
      objectForm("domain-form", "Network interface", "properties", ["networkInterfaces", "0"], p, [["domain", "Domain", "text"]]),
      objectForm("host-form", "Address", "properties", ["networkInterfaces", "0", "hostEntries", "0"], p, [
        ["dhcp", "DHCP", "checkbox"],
        ["address", "Address", "text"],
        ["mask", "Mask", "text"],
        ["gateway", "Gateway", "text"],
        ["dns", "DNS server", "text"],
      ]),
      objectForm("sntp-form", "Time server (SNTP)", "properties", ["sntpEntries", "0"], p, [
        ["enable", "Enabled", "checkbox"],
        ["address", "Address", "text"],
      ]),
      objectForm("mqtt-form", "MQTT", "properties", ["mqtt"], p, [
        ["enable", "Enabled", "checkbox"],
        ["address", "Broker address", "text"],
        ["port", "Port", "number"],
        ["root", "Topic root", "text"],
        ["keepalive", "Keep-alive (s)", "number"],
        ["user", "User", "text"],
        ["pass", "Password", "password"],
      ]),
    );
  }
  for (const [endpoint, title] of [["httpro", "Account ro (live values)"], ["httprw", "Account rw (outputs and points)"], ["httpsu", "Account su (settings)"]]) {
    const account = await api("GET", `/api/v1/${endpoint}`, keysOf(endpoint));
    if (!account.ok) {
      settings.append(h("section", { className: "card" }, h("h2", {}, title), h("p", { className: "status error" }, account.text)));
      continue;
    }
    settings.append(
      objectForm(`${endpoint}-form`, title, endpoint, [], account.data, [["name", "User name", "text"], ["pass", "New password", "password"]],
        "A password left empty stays as it is. The browser asks again for the account whose password you change."),
    );
  }
}

const pairsBody = document.getElementById("pairs");
const pairsStatus = document.getElementById("pairs-status");
const newKeys = document.getElementById("new-keys");

function keyState(key) {
  return key === "" ? "open (empty)" : "set";
}

function renderPairs() {
  pairsBody.replaceChildren(
    ...pairs.map((pair, i) => {
      const rotate = h("button", { type: "button", className: "rotate", dataset: { pair: pair.name } }, "Rotate");
      const open = h("button", { type: "button", className: "secondary make-open", dataset: { pair: pair.name } }, "Make open");
      rotate.addEventListener("click", () => rotatePair(i));
      open.addEventListener("click", () => {
        if (open.dataset.armed !== "true") {
          open.dataset.armed = "true";
          open.textContent = "Really open to anyone?";
          open.className = "danger make-open";
          return;
        }
        setPair(i, "", "");
      });
      const life = h("button", { type: "button", className: "secondary life", dataset: { pair: pair.name } }, "Life");
      life.addEventListener("click", () => showLife(i));
      return h("tr", { dataset: { pair: pair.name } }, h("td", {}, String(pair.name), h("div", { className: "note" }, lifeSummary(pair))), h("td", {}, keyState(pair.rd)), h("td", {}, keyState(pair.wr)), h("td", { className: "actions" }, rotate, open, life));
    }),
  );
}

/** When a Unix time in seconds is, in the browser's words ("never" for 0). */
function when(seconds) {
  return typeof seconds === "number" && seconds > 0 ? new Date(seconds * 1000).toLocaleString() : "never";
}

/** One line on a pair's life under its name: label, state, expiry, last use (docs/api.md §8). */
function lifeSummary(pair) {
  const parts = [];
  if (pair.label) parts.push(String(pair.label));
  if (pair.enabled === false) parts.push("switched off");
  if (pair.expires) parts.push(`expires ${pair.expires} UTC`);
  if (pair.origins) parts.push(`only from ${pair.origins}`);
  parts.push(`last used ${when(pair.lastUsed)}${pair.lastUsedFrom ? ` from ${pair.lastUsedFrom}` : ""}`);
  if (pair.confirmUntil > 0) parts.push(`new keys revert at ${when(pair.confirmUntil)} unless confirmed`);
  if (pair.graceUntil > 0) parts.push(`old keys work until ${when(pair.graceUntil)}`);
  return parts.join(" · ");
}

const lifeBox = h("div", { id: "life" });
document.getElementById("pairs-status").after(lifeBox);

/**
 * The life of one pair (docs/api.md §8): label, switch-off, expiry, origins, written with the apikeys
 * pair's keys; the device refuses (error 8, in words) what would lock the apikeys pair away.
 */
function showLife(i) {
  const pair = pairs[i];
  const fields = [
    ["label", "Label (what the pair is for)", "text"],
    ["enabled", "Enabled", "checkbox"],
    ["expires", "Expires (YYYY-MM-DD HH:MM:SS, UTC; empty: never)", "text"],
    ["origins", "Allowed client addresses (comma-separated addresses and ranges; empty: any)", "text"],
  ];
  const form = objectForm(`life-${i}`, `Life of the ${pair.name} pair`, "apikeys", ["keys", String(i)], { keys: pairs }, fields,
    `Changed ${when(pair.changed)}; last used ${when(pair.lastUsed)}.`);
  lifeBox.replaceChildren(form);
  form.querySelector("input")?.focus();
}

const confirmInput = document.getElementById("confirm-seconds");

async function rotatePair(i) {
  await setPair(i, generateKey(), generateKey(), confirmInput && confirmInput.value !== "" ? confirmInput.value : undefined);
}

/**
 * PUTs a pair's two keys with the apikeys pair's keys; on success the page uses the new keys from now
 * on. With `confirm` seconds, the device goes back to the old keys then unless the new ones are used
 * on the pair's endpoint first: the Confirm button does that (docs/api.md §8).
 */
async function setPair(i, rd, wr, confirm) {
  const pair = pairs[i];
  const body = confirm === undefined ? { rd, wr } : { rd, wr, confirm };
  const result = await api("PUT", `/api/v1/apikeys/keys/${i}`, keysOf("apikeys"), body);
  say(pairsStatus, result.ok ? { ok: true, text: `Pair ${pair.name}: ${rd === "" ? "now open to anyone." : "new keys set."}` } : result);
  if (!result.ok) return;
  Object.assign(pair, result.data);
  pair.rd = rd;
  pair.wr = wr;
  renderPairs();
  if (rd === "" && wr === "") return;
  const confirmButton = confirm === undefined ? null : h("button", { type: "button", className: "confirm-keys" }, "Confirm the new keys now");
  confirmButton?.addEventListener("click", async () => {
    // A request presenting both new keys on the pair's own endpoint confirms them (§8): a PUT with
    // no body passes the key checks and is then refused for its empty body, changing nothing. The
    // device's own record of the pair then says whether the change is still pending.
    await api("PUT", `/api/v1/${encodeURIComponent(pair.name)}`, { rd, wr });
    const pending = await api("GET", `/api/v1/apikeys/keys/${i}/confirmUntil`, keysOf("apikeys"));
    if (pending.ok && pending.data === 0) {
      pair.confirmUntil = 0;
      renderPairs();
    }
    if (!pending.ok) say(pairsStatus, pending);
    else say(pairsStatus, pending.data === 0 ? { ok: true, text: `Pair ${pair.name}: the new keys are confirmed.` } : { ok: false, text: `Pair ${pair.name}: not confirmed yet; the device goes back to the old keys at ${when(pending.data)}.` });
  });
  // Shown once: the table says "set", never the key; this box goes when the page is left.
  newKeys.replaceChildren(
    h("div", { className: "shown-once", role: "alert" },
      h("strong", {}, `New keys of the ${pair.name} pair: copy them now, this page shows them once.`),
      h("div", {}, "Read key (ApiRdKey)"), h("code", { className: "new-rd" }, rd),
      h("div", {}, "Write key (ApiWrKey)"), h("code", { className: "new-wr" }, wr),
      confirm === undefined ? null : h("p", {}, `Unless confirmed within ${confirm} s, the device goes back to the old keys.`),
      confirmButton),
  );
}

renderPairs();
loadSettings();
