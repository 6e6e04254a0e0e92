// The su folder: the device's settings (name, network, time server, MQTT), the three accounts and
// the API key pairs. The page was given the apikeys document by the server-side includes; each form
// uses the pair of the endpoint it writes, and every answer is shown where the change was asked.
import { api, h, isSealedKey, keepSessionKeys, keysForm, meta, say, sessionKeys } from "/common.js";

let apikeys;
try {
  apikeys = JSON.parse(meta("apikeyd:apikeys"));
} catch {
  apikeys = { keys: [] };
}
const pairs = Array.isArray(apikeys.keys) ? apikeys.keys : [];
// A sealed device (docs/api.md §9) shows `sealed:<fingerprint>` for every key: the page knows only
// the keys entered in this tab, and those a rotation here generated.
const sealed = apikeys.sealed === true;
const pageStatus = document.getElementById("page-status");
const settings = document.getElementById("settings");

/** The keys of a pair as this page knows them (updated after each rotation). */
function keysOf(name) {
  const pair = pairs.find((p) => p.name === name);
  if (!pair) return {};
  if (!sealed) return { rd: pair.rd, wr: pair.wr };
  // An empty key is open; a sealed one is what this tab was given, if anything.
  const known = sessionKeys(name) || { rd: "", wr: "" };
  return { rd: isSealedKey(pair.rd) ? known.rd : "", wr: isSealedKey(pair.wr) ? known.wr : "" };
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

/** On a sealed device, a pair whose keys this tab does not know yet: a card that asks for them. */
function unknownPair(name) {
  const pair = pairs.find((p) => p.name === name);
  return sealed && pair !== undefined && sessionKeys(name) === undefined && (isSealedKey(pair.rd) || isSealedKey(pair.wr));
}

function askCard(name, title) {
  const enter = h("button", { type: "button", className: "secondary enter-keys", dataset: { pair: name } }, `Enter the ${name} keys`);
  enter.addEventListener("click", () => {
    askKeys(name);
    document.getElementById("pairs-title").scrollIntoView();
  });
  return h("section", { className: "card", "aria-label": title }, h("h2", {}, title), h("p", { className: "note" }, `Sealed: this page needs the keys of the ${name} pair.`), enter);
}

async function loadSettings() {
  settings.replaceChildren();
  const properties = unknownPair("properties") ? undefined : await api("GET", "/api/v1/properties", keysOf("properties"));
  if (properties === undefined) settings.append(askCard("properties", "Device settings"));
  else if (!properties.ok) {
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
    if (unknownPair(endpoint)) {
      settings.append(askCard(endpoint, title));
      continue;
    }
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
  if (key === "") return "open (empty)";
  return isSealedKey(key) ? `sealed · ${key.slice("sealed:".length)}` : "set";
}

/** On a sealed device: which pairs' keys this tab knows. */
function known(pair) {
  return sessionKeys(pair.name) !== undefined ? "keys entered in this tab" : "keys not entered";
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
      const actions = [rotate, open, life];
      if (sealed) {
        const enter = h("button", { type: "button", className: "secondary enter-keys", dataset: { pair: pair.name } }, "Enter keys");
        enter.addEventListener("click", () => askKeys(pair.name));
        actions.push(enter);
      }
      const note = sealed ? `${lifeSummary(pair)} · ${known(pair)}` : lifeSummary(pair);
      return h("tr", { dataset: { pair: pair.name } }, h("td", {}, String(pair.name), h("div", { className: "note" }, note)), h("td", {}, keyState(pair.rd)), h("td", {}, keyState(pair.wr)), h("td", { className: "actions" }, ...actions));
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

/** On a sealed device: the keys of one pair, entered here and kept for this tab. */
function askKeys(name) {
  const form = keysForm("keys-" + name, [name], "rd+wr", `The keys of the ${name} pair (from the provisioning output file): kept in this browser tab only, until it closes.`, () => {
    newKeys.replaceChildren();
    renderPairs();
    if (name !== "apikeys" && name !== "process" && name !== "data") loadSettings();
  });
  newKeys.replaceChildren(form);
}

/** New keys are made by the device (rd=generate&wr=generate, docs/api.md §9) and read from its answer, the only place they are shown. */
async function rotatePair(i) {
  await setPair(i, "generate", "generate", confirmInput && confirmInput.value !== "" ? confirmInput.value : undefined);
}

/**
 * PUTs a pair's two keys with the apikeys pair's keys; on success the page uses the new keys from now
 * on. With `confirm` seconds, the device goes back to the old keys then unless the new ones are used
 * on the pair's endpoint first: the Confirm button does that (docs/api.md §8).
 */
async function setPair(i, sentRd, sentWr, confirm) {
  const pair = pairs[i];
  const body = confirm === undefined ? { rd: sentRd, wr: sentWr } : { rd: sentRd, wr: sentWr, confirm };
  const result = await api("PUT", `/api/v1/apikeys/keys/${i}`, keysOf("apikeys"), body);
  say(pairsStatus, result.ok ? { ok: true, text: `Pair ${pair.name}: ${sentRd === "" ? "now open to anyone." : "new keys set."}` } : result);
  if (!result.ok) return;
  // The keys as the answer shows them: the one place a sealed device shows them.
  const rd = String(result.data.rd);
  const wr = String(result.data.wr);
  Object.assign(pair, result.data);
  if (sealed) {
    keepSessionKeys(pair.name, { rd, wr });
    // What reads now show of the new keys: their fingerprints.
    const shown = await api("GET", `/api/v1/apikeys/keys/${i}`, keysOf("apikeys"));
    pair.rd = shown.ok ? shown.data.rd : rd === "" ? "" : "sealed:?";
    pair.wr = shown.ok ? shown.data.wr : wr === "" ? "" : "sealed:?";
  } else {
    pair.rd = rd;
    pair.wr = wr;
  }
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

if (sealed) {
  say(pageStatus, {
    ok: true,
    text: "This device is sealed: it keeps digests of its keys only and cannot give this page any key. Enter a pair's keys (Enter keys, below) to use them in this tab: the apikeys pair's to rotate pairs, the properties and account pairs' to change the settings. Rotate shows the new keys once.",
  });
}
renderPairs();
loadSettings();
