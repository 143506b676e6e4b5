/**
 * Argument checks for public constructors: a value of the wrong type gets an Error that names the class, the
 * argument, what it takes and what it got, instead of a TypeError from somewhere inside.
 */

/** How a value reads in an error message: "the string '/some/folder'", "null", "an array of 2", ... */
export function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'string') return `the string '${v.length > 60 ? v.slice(0, 57) + '...' : v}'`;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return `the ${typeof v} ${String(v)}`;
  if (typeof v === 'function') return 'a function';
  if (Array.isArray(v)) return `an array of ${v.length}`;
  const name = Object.getPrototypeOf(v)?.constructor?.name;
  return name && name !== 'Object' ? `a ${name}` : 'an object';
}

function fail(where: string, name: string, expected: string, v: unknown, hint = ''): never {
  throw new Error(`${where}: ${name} must be ${expected}, got ${describeValue(v)}${hint ? `; ${hint}` : ''}`);
}

/** A plain options object (or undefined when `optional`). */
export function expectObject(where: string, name: string, v: unknown, optional = false, hint = ''): void {
  if (optional && v === undefined) return;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(where, name, optional ? 'an object or undefined' : 'an object', v, hint);
}

/** A string (`what` says which in words: 'a file path'). */
export function expectString(where: string, name: string, v: unknown, what = 'a string'): void {
  if (typeof v !== 'string') fail(where, name, what, v);
}

/** A function (or undefined when `optional`). */
export function expectFunction(where: string, name: string, v: unknown, optional = false): void {
  if (!(typeof v === 'function' || (optional && v === undefined))) fail(where, name, optional ? 'a function or undefined' : 'a function', v);
}

/** A Dataset (lib/data/dataset.ts): an object with a number length and get(i). */
export function expectDataset(where: string, name: string, v: unknown): void {
  const d = v as { length?: unknown; get?: unknown } | null;
  if (d === null || typeof d !== 'object' || typeof d.length !== 'number' || typeof d.get !== 'function')
    fail(where, name, 'a Dataset (an object with length and get(i))', v, 'open one with openDataset(...)');
}

/** An array or typed array: an object with a number length (`what` says of what in words). */
export function expectArrayLike(where: string, name: string, v: unknown, what: string): void {
  if (v === null || typeof v !== 'object' || typeof (v as { length?: unknown }).length !== 'number') fail(where, name, what, v);
}

/** An integer >= min. */
export function expectInteger(where: string, name: string, v: unknown, min: number): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) fail(where, name, `an integer >= ${min}`, v);
}

/** A finite number (> 0 when `positive`). */
export function expectNumber(where: string, name: string, v: unknown, positive = false): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || (positive && !(v > 0))) fail(where, name, positive ? 'a positive number' : 'a finite number', v);
}

/** A finite number for which `ok` holds (`what` says the range in words). */
export function expectFinite(where: string, name: string, v: unknown, ok: (x: number) => boolean, what: string): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) fail(where, name, what, v);
}

/** Finite in float32, where the kernels run (an optimizer's lr, weight decay): 1e39 is finite only as a double. */
export function isFloat32Finite(x: number): boolean {
  return Number.isFinite(Math.fround(x));
}

/** A finite number >= 0. */
export function expectNonNegative(where: string, name: string, v: unknown): void {
  expectFinite(where, name, v, (x) => x >= 0, 'a finite number >= 0');
}

/**
 * An options object whose keys are all in `known`: a misspelt option is an Error instead of being ignored (a
 * snake_case name is told its camelCase spelling).
 */
export function expectKnownKeys(where: string, name: string, v: object, known: readonly string[]): void {
  for (const k of Object.keys(v)) {
    if (known.includes(k)) continue;
    const near = nearestName(k, known);
    throw new Error(`${where}: ${name} has no option '${k}'${near ? ` (did you mean ${near}?)` : ''}; it takes ${known.join(', ')}`);
  }
}

/**
 * The name of `known` that `name` most likely misspells, or undefined: the same name in another case or with other
 * separators (batch_size, batchSize, batch-size), in the other number (epoch, epochs), else the nearest name within
 * two edits of it (of a name of 4 letters or more) where no other is as near (batch-sze: batch-size, one edit, not
 * patch-size, two).
 */
export function nearestName(name: string, known: readonly string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[-_]/g, '');
  const n = norm(name);
  const same = known.find((x) => [n, `${n}s`, n.replace(/s$/, '')].includes(norm(x)));
  if (same !== undefined || n.length < 4) return same;
  const distance = known.map((x) => editDistance(n, norm(x)));
  const nearest = Math.min(...distance);
  const close = known.filter((_, k) => distance[k] === nearest);
  return nearest <= 2 && close.length === 1 ? close[0] : undefined;
}

/** Levenshtein distance: the fewest insertions, deletions and substitutions that make `a` into `b`. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}

/**
 * The option names of an options type, listed once: optionNames<T>({ a: true, b: true }). The compiler holds the list
 * to every name of T and nothing else, so that expectKnownKeys with it never refuses a real option.
 */
export function optionNames<T>(names: { [K in keyof T]-?: true }): readonly string[] {
  return Object.keys(names);
}

/** An instance of `C` (`what` says it in words). */
export function expectInstance(where: string, name: string, v: unknown, C: abstract new (...args: never[]) => unknown, what: string, hint = ''): void {
  if (!(v instanceof C)) fail(where, name, what, v, hint);
}

/** An array whose every item passes `ok` (`item` says one item in words). */
export function expectArrayOf(where: string, name: string, v: unknown, ok: (item: unknown) => boolean, item: string): void {
  if (!Array.isArray(v)) fail(where, name, `an array, each item ${item}`, v);
  const bad = v.findIndex((x) => !ok(x));
  if (bad >= 0) fail(where, `${name}[${bad}]`, item, v[bad]);
}

/**
 * Where `value` holds what JSON cannot store, as its key path from `name` ("meta.options.seed is a BigInt",
 * "meta.options.self refers back to meta.options (a circular reference)"), or null when JSON.stringify takes it all.
 * Values are followed as JSON.stringify follows them: toJSON first, then an array's items or an object's own
 * enumerable keys.
 */
export function jsonProblem(value: unknown, name: string): string | null {
  const open: [object, string][] = []; // the objects on the way to the value looked at, with their key paths
  const visit = (key: string, v: unknown, at: string): string | null => {
    if ((typeof v === 'object' || typeof v === 'bigint') && v !== null && typeof (v as { toJSON?: unknown }).toJSON === 'function')
      v = (v as { toJSON(key: string): unknown }).toJSON(key);
    if (typeof v === 'bigint') return `${at} is a BigInt`;
    if (v === null || typeof v !== 'object') return null;
    const back = open.find(([o]) => o === v);
    if (back) return `${at} refers back to ${back[1]} (a circular reference)`;
    open.push([v, at]);
    const items: [string, unknown, string][] = Array.isArray(v)
      ? v.map((x, i) => [String(i), x, `${at}[${i}]`])
      : Object.keys(v).map((k) => [k, (v as Record<string, unknown>)[k], /^[A-Za-z_$][\w$]*$/.test(k) ? `${at}.${k}` : `${at}[${JSON.stringify(k)}]`]);
    for (const [k, x, path] of items) {
      const problem = visit(k, x, path);
      if (problem) return problem;
    }
    open.pop();
    return null;
  };
  return visit('', value, name);
}

/** A value for an error message, an array item by item ("[NaN, 'a']"; JSON would print null for NaN), else describeValue's. */
export function describeItems(v: unknown): string {
  return Array.isArray(v) ? `[${v.map((x) => (typeof x === 'string' ? `'${x}'` : String(x))).join(', ')}]` : describeValue(v);
}

/** The type an option of a run (pretrain, finetune, linprobe) takes. */
export type OptionType = 'number' | 'string' | 'boolean' | 'function' | 'object' | 'AbortSignal' | 'number[]' | 'checked';

const OPTION_TYPE_WORDS: Record<OptionType, string> = {
  number: 'a number',
  string: 'a string',
  boolean: 'true or false',
  function: 'a function',
  object: 'an object',
  AbortSignal: 'an AbortSignal',
  'number[]': 'an array of numbers',
  checked: 'what its own check says',
};

function hasType(v: unknown, t: OptionType): boolean {
  if (t === 'checked') return true; // the caller checks it with a message of its own
  if (t === 'object') return v !== null && typeof v === 'object' && !Array.isArray(v);
  if (t === 'AbortSignal') return v instanceof AbortSignal;
  if (t === 'number[]') return Array.isArray(v) && v.every((x) => typeof x === 'number');
  return typeof v === t;
}

/**
 * The options object of `where`: an object with no key outside `types` (expectKnownKeys), each value given (not
 * undefined) of its type or one of its types. An option left out or undefined takes its default; null is a value
 * given, of no option's type, so it is refused like any other, the message saying how to ask for the default. Ranges
 * are the caller's to check.
 */
export function expectOptions(where: string, opts: unknown, types: Readonly<Record<string, OptionType | readonly OptionType[]>>): void {
  expectObject(where, 'options', opts);
  expectKnownKeys(where, 'options', opts as object, Object.keys(types));
  for (const [k, t] of Object.entries(types)) {
    const v = (opts as Record<string, unknown>)[k];
    const ts = typeof t === 'string' ? [t] : t;
    if (v !== undefined && !ts.some((x) => hasType(v, x)))
      fail(where, k, ts.map((x) => OPTION_TYPE_WORDS[x]).join(' or '), v, v === null ? 'leave it out (or undefined) for its default' : '');
  }
}
