import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import {
  UsageError,
  addTypedOption,
  parseBool,
  parseChoice,
  parseDurationMs,
  parseInteger,
  parseList,
  parsePort,
  useEnv,
  type TypedOption,
} from '../../../src/cli/env.js';
import { addEtcdFlags, etcdSecurityOf } from '../../../src/cli/etcd-flags.js';

function codeOf(fn: () => unknown): { code?: string; field?: string; message: string; exitCode?: number } {
  try {
    fn();
  } catch (err) {
    return err as never;
  }
  throw new Error('did not throw');
}

describe('value parsers', () => {
  it('booleans are exactly what Go strconv.ParseBool accepts', () => {
    for (const t of ['1', 't', 'T', 'TRUE', 'true', 'True']) expect(parseBool(t, 'X')).toBe(true);
    for (const f of ['0', 'f', 'F', 'FALSE', 'false', 'False']) expect(parseBool(f, 'X')).toBe(false);
    for (const bad of ['yes', 'no', 'on', 'tRUE', ' true', '2', '']) {
      const e = codeOf(() => parseBool(bad, 'WEFTD_IP_MASQ'));
      expect(e).toBeInstanceOf(UsageError);
      expect(e.code).toBe('ERR_INVALID_ARGUMENT');
      expect(e.field).toBe('WEFTD_IP_MASQ');
      expect(e.exitCode).toBe(2);
    }
  });

  it('ports and integers are range-checked', () => {
    expect(parsePort('0', 'P')).toBe(0);
    expect(parsePort('65535', 'P')).toBe(65535);
    for (const bad of ['abc', '65536', '-1', '1.5', '0x10', '']) {
      const e = codeOf(() => parsePort(bad, 'WEFTD_HEALTHZ_PORT'));
      expect(e.code).toBe('ERR_INVALID_ARGUMENT');
      expect(e.message).toBe(`WEFTD_HEALTHZ_PORT: "${bad}" is not a port (0..65535)`);
    }
    expect(parseInteger(0, 31)('13', 'B')).toBe(13);
    expect(codeOf(() => parseInteger(0, 31)('32', '--masquerade-bit')).message).toContain('out of range (0..31)');
    expect(codeOf(() => parseInteger(0)('1e3', 'N')).message).toContain('not a whole number');
  });

  it('durations, choices and lists', () => {
    expect(parseDurationMs('1m30s', 'D')).toBe(90_000);
    expect(parseDurationMs('500ms', 'D')).toBe(500);
    const d = codeOf(() => parseDurationMs('3x', 'WEFT_PROXY_SYNC_PERIOD'));
    expect(d).toBeInstanceOf(UsageError);
    expect(d.message).toMatch(/^WEFT_PROXY_SYNC_PERIOD: "3x" is not a duration/);
    expect(parseChoice(['text', 'json'] as const)('json', 'F')).toBe('json');
    expect(codeOf(() => parseChoice(['text', 'json'] as const)('xml', 'WEFTD_LOG_FORMAT')).message).toBe('WEFTD_LOG_FORMAT: "xml" is not one of text, json');
    expect(parseList(' a, b,,c ', 'L')).toEqual(['a', 'b', 'c']);
  });
});

/** A throwaway program with a few typed options, run with argv and an environment. */
async function run(argv: string[], env: Record<string, string>, extra: (c: Command) => void = () => {}) {
  const program = new Command('t').exitOverride();
  const add = <T>(o: TypedOption<T>) => addTypedOption(program, o);
  add({ flags: '--ip-masq', description: '', kind: 'boolean' });
  add({ flags: '--healthz-port <port>', description: '', parse: parsePort, default: 9808 });
  add({ flags: '--iface <name>', description: '', kind: 'list' });
  add({ flags: '--public-ip <ip>', description: '' });
  add({ flags: '--cleanup', description: '', kind: 'boolean', env: false });
  extra(program);
  let seen: Record<string, unknown> = {};
  program.action((o) => void (seen = o));
  useEnv(program, 'WEFTD', env);
  await program.parseAsync(argv, { from: 'user' });
  return seen;
}

describe('flags and environment share one parser', () => {
  it('WEFTD_IP_MASQ=1 / TRUE / t mean true, as --ip-masq=1 does', async () => {
    for (const v of ['1', 'TRUE', 't', 'true']) expect((await run([], { WEFTD_IP_MASQ: v })).ipMasq).toBe(true);
    for (const v of ['0', 'FALSE', 'f']) expect((await run([], { WEFTD_IP_MASQ: v })).ipMasq).toBe(false);
    expect((await run(['--ip-masq'], {})).ipMasq).toBe(true);
    expect((await run(['--ip-masq=1'], {})).ipMasq).toBe(true);
    expect((await run(['--ip-masq=false'], {})).ipMasq).toBe(false);
    expect((await run([], {})).ipMasq).toBe(false);
  });

  it('a bad environment value fails naming the variable; a bad flag names the flag', async () => {
    await expect(run([], { WEFTD_HEALTHZ_PORT: 'abc' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'WEFTD_HEALTHZ_PORT', exitCode: 2 });
    await expect(run([], { WEFTD_IP_MASQ: 'yes' })).rejects.toMatchObject({ field: 'WEFTD_IP_MASQ' });
    await expect(run(['--healthz-port', 'abc'], {})).rejects.toMatchObject({ field: '--healthz-port', exitCode: 2 });
    await expect(run(['--ip-masq=yes'], {})).rejects.toMatchObject({ field: '--ip-masq' });
  });

  it('the command line wins over the environment; empty means unset for typed values', async () => {
    expect((await run(['--healthz-port', '1234'], { WEFTD_HEALTHZ_PORT: 'abc' })).healthzPort).toBe(1234);
    expect((await run([], { WEFTD_HEALTHZ_PORT: '0' })).healthzPort).toBe(0);
    expect((await run([], { WEFTD_HEALTHZ_PORT: '' })).healthzPort).toBe(9808);
    expect((await run([], { WEFTD_PUBLIC_IP: '192.0.2.1' })).publicIp).toBe('192.0.2.1');
  });

  it('lists: repeated flags and comma lists append; the environment gives a comma list', async () => {
    expect((await run(['--iface', 'eth0,eth1', '--iface', '192.0.2.1'], {})).iface).toEqual(['eth0', 'eth1', '192.0.2.1']);
    expect((await run([], { WEFTD_IFACE: 'eth1, 192.0.2.1' })).iface).toEqual(['eth1', '192.0.2.1']);
    expect((await run(['--iface', 'eth9'], { WEFTD_IFACE: 'eth1' })).iface).toEqual(['eth9']);
  });

  it('env: false options are never read from the environment', async () => {
    expect((await run([], { WEFTD_CLEANUP: 'true' })).cleanup).toBe(false);
  });

  it('subcommands read their own and their parents\' typed options', async () => {
    const program = new Command('weftctl').exitOverride();
    addTypedOption(program, { flags: '--etcd-endpoints <urls>', description: '', default: 'http://127.0.0.1:2379' });
    let seen: Record<string, unknown> = {};
    addEtcdFlags(program.command('get')).action((_o, cmd: Command) => void (seen = cmd.optsWithGlobals()));
    useEnv(program, 'WEFTCTL', { WEFTCTL_ETCD_ENDPOINTS: 'https://192.0.2.254:2379', WEFTCTL_ETCD_CAFILE: '/ca.pem', WEFTCTL_ETCD_USERNAME: 'root' });
    await program.parseAsync(['get', '--etcd-password', 'pw'], { from: 'user' });
    expect(seen).toMatchObject({ etcdEndpoints: 'https://192.0.2.254:2379', etcdCafile: '/ca.pem', etcdUsername: 'root', etcdPassword: 'pw' });
    expect(etcdSecurityOf(seen)).toEqual({ caFile: '/ca.pem', username: 'root', password: 'pw' });
  });
});

describe('etcd flags', () => {
  it('adds the five flags with flanneld\'s names', () => {
    const names = addEtcdFlags(new Command('x')).options.map((o) => o.long);
    expect(names).toEqual(['--etcd-cafile', '--etcd-certfile', '--etcd-keyfile', '--etcd-username', '--etcd-password']);
  });

  it('a certificate without its key (or the reverse) is a usage error', () => {
    expect(codeOf(() => etcdSecurityOf({ etcdCertfile: '/c.pem' })).field).toBe('--etcd-keyfile');
    expect(codeOf(() => etcdSecurityOf({ etcdKeyfile: '/k.pem' })).field).toBe('--etcd-certfile');
    expect(etcdSecurityOf({ etcdCertfile: '/c.pem', etcdKeyfile: '/k.pem' })).toEqual({ certFile: '/c.pem', keyFile: '/k.pem' });
    expect(etcdSecurityOf({})).toEqual({});
  });
});
