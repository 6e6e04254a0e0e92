/**
 * Faults in what a user hands us (a JSON file, a command line), told by position only: never by
 * quoting the text, which may be a key. Node's own messages do quote it (JSON.parse the text around
 * the fault, parseArgs an unknown option: `keys set data -SECRET` is "Unknown option '-S'").
 */

import { parseArgs } from "node:util";

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

/** Option names and types, as parseArgs takes them. */
export type ArgSpec = Readonly<Record<string, { readonly type: "string" | "boolean"; readonly short?: string }>>;

/** A command line refused; the message names options and argument numbers, never what was typed. */
export class ArgvError extends Error {
  override name = "ArgvError";
}

/**
 * parseArgs, strict, with refusals that never quote an argument: an unknown option may be a key
 * typed without `--rd=`. Options named in `once` may not be repeated (the last would silently win).
 */
export function parseArgv(
  args: readonly string[],
  spec: ArgSpec,
  rules: { readonly positionals: boolean; readonly once?: readonly string[] },
): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  let parsed;
  try {
    parsed = parseArgs({ args: [...args], options: spec, strict: true, allowPositionals: rules.positionals, tokens: true });
  } catch (error) {
    throw new ArgvError(argvProblem(error, args, spec));
  }
  for (const name of rules.once ?? []) {
    // tokens are missing before Node 18.7: no check there.
    if ((parsed.tokens ?? []).filter((t) => t.kind === "option" && t.name === name).length > 1) throw new ArgvError(`--${name} is given more than once`);
  }
  return { values: parsed.values as Record<string, string | boolean | undefined>, positionals: parsed.positionals };
}

function argvProblem(error: unknown, args: readonly string[], spec: ArgSpec): string {
  const code = (error as { code?: unknown }).code;
  // Which argument strict parsing refused, found by a lenient parse of the same argv.
  let tokens: ReadonlyArray<{ kind: string; name?: string; index: number; value?: string | undefined; inlineValue?: boolean | undefined }> = [];
  try {
    tokens = parseArgs({ args: [...args], options: spec, strict: false, allowPositionals: true, tokens: true }).tokens ?? [];
  } catch {
    // No argument number then.
  }
  const known = (t: { kind: string; name?: string }): t is { kind: "option"; name: string } => t.kind === "option" && t.name !== undefined && Object.hasOwn(spec, t.name);
  const argument = (t: { index: number } | undefined): string => (t === undefined ? "an argument" : `argument ${t.index + 1}`);
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    const token = tokens.find((t) => t.kind === "option" && !known(t));
    return `${argument(token)} is not an option (a value that begins with "-" is given as --option=VALUE)`;
  }
  if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") {
    return `${argument(tokens.find((t) => t.kind === "positional"))} is not an option; only options are taken`;
  }
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    for (const t of tokens) {
      if (!known(t)) continue;
      const type = spec[t.name]?.type;
      if (type === "boolean" && t.value !== undefined) return `--${t.name} takes no value`;
      if (type === "string" && t.value === undefined) return `--${t.name} needs a value: --${t.name}=VALUE`;
      if (type === "string" && t.inlineValue === false && t.value?.startsWith("-") === true) {
        return `--${t.name} is followed by another option, not by its value; a value that begins with "-" is given as --${t.name}=VALUE`;
      }
    }
  }
  return "malformed command line";
}
