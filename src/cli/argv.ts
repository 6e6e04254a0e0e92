/**
 * Command lines, parsed strictly and refused without quoting: node's parseArgs names an unknown
 * option by what was typed (`keys set data -SECRET` is "Unknown option '-S'"), and that may be a key.
 * One parser and one refusal for the server, its commands and the provisioning tool.
 */

import { parseArgs } from "node:util";

/** Option names and types, as parseArgs takes them. */
export type ArgSpec = Readonly<Record<string, { readonly type: "string" | "boolean"; readonly short?: string }>>;

/**
 * A command line refused: the entry prints the message with a pointer to --help and exits 2. The
 * message names options and argument numbers, never what was typed (it may be a key).
 */
export class UsageError extends Error {
  override name = "UsageError";
}

/** `text` as a whole number from `min` to `max`, or a UsageError naming the option (never the value). */
export function wholeNumber(option: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^[0-9]+$/.test(text) || n < min || n > max) throw new UsageError(`--${option} takes a whole number from ${min} to ${max}`);
  return n;
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
  const plain = plainParse(args, spec, rules);
  if (plain !== undefined) return plain;
  let parsed;
  try {
    parsed = parseArgs({ args: [...args], options: spec, strict: true, allowPositionals: rules.positionals, tokens: true });
  } catch (error) {
    throw new UsageError(argvProblem(error, args, spec));
  }
  for (const name of rules.once ?? []) {
    // tokens are missing before Node 18.7: no check there.
    if ((parsed.tokens ?? []).filter((t) => t.kind === "option" && t.name === name).length > 1) throw new UsageError(`--${name} is given more than once`);
  }
  return { values: parsed.values as Record<string, string | boolean | undefined>, positionals: parsed.positionals };
}

/**
 * The common case without node's parseArgs, whose module costs about half a millisecond of every
 * start (`npm run bench`): `--name=value`, `--name value`, `--flag` and plain positionals, every
 * name known. Anything else (a short option, `--`, an unknown name, a value that begins with "-",
 * a missing value, a repeat of a `once` option) is left to parseArgs, for its exact refusal.
 */
function plainParse(
  args: readonly string[],
  spec: ArgSpec,
  rules: { readonly positionals: boolean; readonly once?: readonly string[] },
): { values: Record<string, string | boolean | undefined>; positionals: string[] } | undefined {
  const values: Record<string, string | boolean | undefined> = Object.create(null) as Record<string, string | boolean | undefined>;
  const positionals: string[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (!arg.startsWith("-")) {
      if (!rules.positionals) return undefined;
      positionals.push(arg);
      continue;
    }
    if (!arg.startsWith("--") || arg === "--") return undefined;
    const eq = arg.indexOf("=");
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    const option = Object.hasOwn(spec, name) ? spec[name] : undefined;
    if (option === undefined || (seen.has(name) && rules.once?.includes(name) === true)) return undefined;
    seen.add(name);
    if (option.type === "boolean") {
      if (eq !== -1) return undefined;
      values[name] = true;
    } else if (eq !== -1) {
      values[name] = arg.slice(eq + 1);
    } else {
      const next = args[i + 1];
      if (next === undefined || next.startsWith("-")) return undefined;
      values[name] = next;
      i++;
    }
  }
  return { values, positionals };
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
    const raw = token === undefined ? undefined : args[token.index];
    const name = raw?.startsWith("--") === true ? raw.slice(2).split("=")[0] : undefined;
    // Only a name that looks like one of ours is repeated, never its value: anything else may be a
    // key typed without --rd= (`--SECRET`), and is named by its place alone.
    if (name !== undefined && OPTION_NAME.test(name)) {
      const near = nearest(name, Object.keys(spec));
      return `unknown option --${name}${near === undefined ? "" : ` (did you mean --${near}?)`}`;
    }
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

/** What an option name of ours looks like: lower-case words joined by "-". */
const OPTION_NAME = /^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$/;

/** The known name (option, command) closest to a mistyped one: at most two edits away, or one it begins; else none. */
export function nearest(name: string, options: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const option of options) {
    const distance = option.startsWith(name) && name.length >= 3 ? 1 : editDistance(name, option);
    if (distance < bestDistance) [best, bestDistance] = [option, distance];
  }
  return best;
}

/** Levenshtein distance (insertions, deletions, substitutions), for short option names. */
function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next.push(Math.min((row[j] as number) + 1, (next[j - 1] as number) + 1, (row[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1)));
    }
    row = next;
  }
  return row[b.length] as number;
}
