// Small pure helpers of the orchestrator: argument parsing, pulling the JSON
// document out of a suite's stdout, file-safe timestamps.

export const ALL_SUITES = ['convergence', 'cni', 'dataplane', 'cpu', 'memory', 'proxy'];

/** `--quick`, `--only a,b`, `--out DIR`, `--help`. Unknown flags are errors. */
export function parseArgs(argv) {
  const o = { quick: false, only: [...ALL_SUITES], out: undefined, help: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === '') throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === '--quick') o.quick = true;
    else if (flag === '--help' || flag === '-h') o.help = true;
    else if (flag === '--out') o.out = value();
    else if (flag === '--only') {
      const list = value().split(',').map((s) => s.trim()).filter(Boolean);
      const bad = list.filter((s) => !ALL_SUITES.includes(s));
      if (bad.length) throw new Error(`--only: unknown suite ${bad.join(', ')} (known: ${ALL_SUITES.join(', ')})`);
      o.only = ALL_SUITES.filter((s) => list.includes(s));
    } else throw new Error(`unknown option ${a}`);
  }
  return o;
}

/**
 * The JSON document a suite printed: the whole stdout if it is JSON, else the
 * last block that starts with a line beginning with "{" and parses (suites
 * print human lines first and the JSON last, on one line or pretty-printed).
 */
export function extractJson(stdout) {
  const text = stdout.trim();
  try {
    return JSON.parse(text);
  } catch {
    /* mixed output */
  }
  const lines = text.split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    if (!lines[i].startsWith('{')) continue;
    try {
      return JSON.parse(lines.slice(i).join('\n'));
    } catch {
      /* keep looking further up */
    }
  }
  throw new Error('no JSON document in the output');
}

/** 2026-11-22T04:26:38.123Z -> "2026-11-22T04-26-38Z" (safe in file names, sorts by time). */
export function fileStamp(date) {
  return date.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
}
