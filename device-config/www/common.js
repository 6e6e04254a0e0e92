// What the folders' pages share: the REST calls with the keys the page was given, the API's answers
// in words, and building elements. Text a user typed is only ever set with textContent or .value:
// never parsed as HTML.

/** The catalogue of the API's errors, in words (docs/api.md §5). */
const MEANINGS = {
  1: "there is no such path in the document",
  2: "there is no such endpoint",
  3: "the read key was refused",
  4: "the write key was refused",
  5: "the method is not allowed here",
  6: "that member is read-only",
  7: "the object has no such member",
  8: "the value is of the wrong kind or out of range",
  9: "the request was malformed",
  10: "the request body is too large",
  11: "the body is neither form-encoded nor JSON",
  12: "too many wrong keys from this address",
  13: "the device could not store the change, so nothing changed",
  14: "the device met an internal error (its log says more)",
  15: "the request's headers are too large",
  16: "the key is right, but its pair is disabled or expired",
  17: "the key is right, but not from this address",
  18: "the I/O driver could not apply the output, so nothing changed",
};

/** The content of <meta name="NAME">, put there by the server-side includes ("" when absent). */
export function meta(name) {
  const element = document.querySelector(`meta[name="${name}"]`);
  return element === null ? "" : element.content;
}

/**
 * One REST call. `keys` holds rd and wr ("" or absent: header not sent). `body` is an object sent
 * form-encoded. Resolves to { ok, data, text }: text is the answer in words, success or error.
 */
export async function api(method, path, keys = {}, body = undefined) {
  const headers = {};
  if (keys.rd) headers["ApiRdKey"] = keys.rd;
  if (keys.wr) headers["ApiWrKey"] = keys.wr;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/x-www-form-urlencoded";
    init.body = new URLSearchParams(body).toString();
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    return { ok: false, error: -1, data: null, text: "The device did not answer." };
  }
  let envelope;
  try {
    envelope = await response.json();
  } catch {
    return { ok: false, error: -1, data: null, text: `The device answered HTTP ${response.status}, not the API's envelope.` };
  }
  const code = envelope && envelope.meta ? envelope.meta.error : -1;
  if (code === 0) return { ok: true, error: 0, data: envelope.data, text: "Done." };
  let text = `Error ${code} (${envelope.meta ? envelope.meta.message : "?"}): ${MEANINGS[code] || "an error this page does not know"}.`;
  const retry = response.headers.get("Retry-After");
  if (code === 12 && retry !== null) text += ` Try again in ${retry} s.`;
  return { ok: false, error: code, data: null, text };
}

/** Shows an answer in a status element. */
export function say(element, result) {
  element.textContent = result.text;
  element.className = "status " + (result.ok ? "ok" : "error");
}

/** Builds an element: attributes as properties, children as nodes or text (never HTML). */
export function h(tag, properties = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(properties)) {
    if (name === "dataset") Object.assign(element.dataset, value);
    else if (name in element) element[name] = value;
    else element.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    element.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return element;
}

/**
 * Sealed devices (docs/api.md §9) show `sealed:<fingerprint>` in place of every key, so the pages
 * cannot be given keys: the technician enters a pair's keys once, and they are kept in this browser
 * tab's sessionStorage (gone when the tab closes; never in a cookie, never sent anywhere but in the
 * key headers of this device's API).
 */
export function isSealedKey(key) {
  return typeof key === "string" && key.startsWith("sealed:");
}

/** The keys of a pair entered (or generated) in this tab; undefined when none. */
export function sessionKeys(name) {
  try {
    const stored = JSON.parse(sessionStorage.getItem(`apikeyd:keys:${name}`) || "null");
    return stored && typeof stored.rd === "string" && typeof stored.wr === "string" ? stored : undefined;
  } catch {
    return undefined;
  }
}

/** Keeps a pair's keys for this tab. */
export function keepSessionKeys(name, keys) {
  try {
    sessionStorage.setItem(`apikeyd:keys:${name}`, JSON.stringify({ rd: keys.rd || "", wr: keys.wr || "" }));
  } catch {
    // Storage refused (private mode quota): the keys last as long as this page.
  }
}

/**
 * A small form asking for the keys of the pairs named (`sides`: "rd" or "rd+wr"), kept in this
 * tab's session on submit; `done` is called then.
 */
export function keysForm(id, pairs, sides, note, done) {
  const inputs = [];
  const fields = [];
  for (const name of pairs) {
    for (const side of sides === "rd" ? ["rd"] : ["rd", "wr"]) {
      const input = h("input", { type: "password", name: `${name}-${side}`, id: `${id}-${name}-${side}`, autocomplete: "off", spellcheck: false });
      inputs.push({ name, side, input });
      fields.push(h("label", {}, `${name} ${side === "rd" ? "read key (ApiRdKey)" : "write key (ApiWrKey)"}`, input));
    }
  }
  const form = h("form", { id, className: "session-keys" }, h("p", { className: "note" }, note), ...fields, h("button", { type: "submit" }, "Use these keys"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    for (const name of pairs) {
      const mine = inputs.filter((i) => i.name === name);
      // A pair left blank is not taken: the tab keeps what it knew of it.
      if (mine.every((i) => i.input.value === "")) continue;
      const known = sessionKeys(name) || { rd: "", wr: "" };
      const keys = { ...known };
      for (const { side, input } of mine) keys[side] = input.value;
      keepSessionKeys(name, keys);
    }
    done();
  });
  return form;
}

/** The kind of an I/O point from its type name: "Ai", "Ao", "Di" or "Do". */
export function kindOf(entry) {
  const type = entry && typeof entry["Json+typeName"] === "string" ? entry["Json+typeName"] : "";
  return type.slice(-2);
}

export const KIND_NAMES = { Ai: "analog input", Ao: "analog output", Di: "digital input", Do: "digital output" };

/** A point's value in words: ON/OFF for digital points, the number and unit for analog ones. */
export function valueText(value, unit) {
  if (typeof value === "boolean") return value ? "ON" : "OFF";
  if (value === null || value === undefined) return "–";
  return unit ? `${value} ${unit}` : String(value);
}

/** A Unix time in seconds as local date and time ("never" for 0). */
export function timeText(seconds) {
  if (!seconds) return "never";
  return new Date(seconds * 1000).toLocaleString();
}
