/**
 * Where a JSON text a user handed us (a config or state file, an inventory) goes wrong, told by
 * position only: never by quoting the text, which may hold a key. JSON.parse's own message quotes
 * the text around the fault (Node 20), and V8 names no position for "Unexpected token".
 */

/** A position in a text: 1-based line and column (in UTF-16 code units). */
export function lineAndColumn(text: string, offset: number): string {
  const before = text.slice(0, offset);
  const lineStart = before.lastIndexOf("\n") + 1;
  return `line ${before.split("\n").length}, column ${offset - lineStart + 1}`;
}

class Fault {
  constructor(readonly at: number) {}
}

const SPACE = new Set([" ", "\t", "\n", "\r"]);
const ESCAPES = new Set(['"', "\\", "/", "b", "f", "n", "r", "t"]);
const HEX = /^[0-9A-Fa-f]$/;
const DIGIT = /^[0-9]$/;

/**
 * The offset of the first character at which `text` stops being JSON (RFC 8259, as JSON.parse reads
 * it): `text.length` when it ends too early, -1 when it is valid. Iterative, so no nesting depth
 * overflows it. Used only after JSON.parse has refused the text.
 */
export function jsonFaultOffset(text: string): number {
  let i = 0;
  const space = (): void => {
    while (i < text.length && SPACE.has(text[i] as string)) i++;
  };
  const expect = (char: string): void => {
    if (text[i] !== char) throw new Fault(i);
    i++;
  };
  const digits = (): void => {
    if (!DIGIT.test(text[i] ?? "")) throw new Fault(i);
    while (DIGIT.test(text[i] ?? "")) i++;
  };
  const string = (): void => {
    expect('"');
    for (;;) {
      const c = text[i];
      if (c === undefined) throw new Fault(i);
      if (c === '"') break;
      if (c.charCodeAt(0) < 0x20) throw new Fault(i);
      if (c === "\\") {
        i++;
        if (text[i] === "u") {
          for (let k = 1; k <= 4; k++) if (!HEX.test(text[i + k] ?? "")) throw new Fault(i + k);
          i += 4;
        } else if (!ESCAPES.has(text[i] ?? "")) {
          throw new Fault(i);
        }
      }
      i++;
    }
    i++;
  };
  const memberName = (): void => {
    space();
    string();
    space();
    expect(":");
  };
  const open: Array<"]" | "}"> = [];
  try {
    for (;;) {
      // A value starts here.
      space();
      const c = text[i];
      if (c === "{" || c === "[") {
        i++;
        space();
        if (text[i] === (c === "{" ? "}" : "]")) {
          i++;
        } else {
          open.push(c === "{" ? "}" : "]");
          if (c === "{") memberName();
          continue;
        }
      } else if (c === '"') {
        string();
      } else if (c === "-" || DIGIT.test(c ?? "")) {
        if (c === "-") i++;
        if (text[i] === "0") i++;
        else digits();
        if (text[i] === ".") {
          i++;
          digits();
        }
        if (text[i] === "e" || text[i] === "E") {
          i++;
          if (text[i] === "+" || text[i] === "-") i++;
          digits();
        }
      } else {
        const word = ["true", "false", "null"].find((w) => w[0] === c);
        if (word === undefined) throw new Fault(i);
        for (const char of word) expect(char);
      }
      // After a value: close what it ends, or go on to the next member or element.
      for (;;) {
        space();
        const close = open[open.length - 1];
        if (close === undefined) return i === text.length ? -1 : i;
        if (text[i] === close) {
          open.pop();
          i++;
          continue;
        }
        expect(",");
        if (close === "}") memberName();
        break;
      }
    }
  } catch (error) {
    if (error instanceof Fault) return error.at;
    throw error;
  }
}

/** Where `text` stops being JSON, as "line L, column C" (the end of the text when it stops too early). */
export function jsonFaultPosition(text: string): string {
  const at = jsonFaultOffset(text);
  return lineAndColumn(text, at === -1 ? text.length : at);
}
