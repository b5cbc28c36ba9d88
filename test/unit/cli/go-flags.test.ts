import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { addTypedOption, booleanFlagsOf, goFlagArgv, parsePort, useEnv } from '../../../src/cli/env.js';

function prog(env: NodeJS.ProcessEnv = {}) {
  const c = new Command('t').exitOverride().configureOutput({ writeErr: () => {} });
  addTypedOption(c, { flags: '--ip-masq', description: '', kind: 'boolean' });
  addTypedOption(c, { flags: '--healthz-port <port>', description: '', parse: parsePort, default: 9808 });
  addTypedOption(c, { flags: '--iface <x>', description: '', kind: 'list' });
  let got: Record<string, unknown> = {};
  c.action((o) => void (got = o));
  useEnv(c, ['WEFTD', 'FLANNELD'], env);
  return { c, run: (args: string[]) => (c.parse(['node', 't', ...goFlagArgv(args, booleanFlagsOf(c))]), got) };
}

describe('Go flag syntax', () => {
  it('one or two dashes, = or space', () => {
    expect(prog().run(['-healthz-port=1', '-iface', 'eth0', '--iface=eth1'])).toMatchObject({ healthzPort: 1, iface: ['eth0', 'eth1'] });
    expect(prog().run(['--healthz-port', '7'])).toMatchObject({ healthzPort: 7 });
  });
  it('booleans: bare is true, =value parsed, never the next word', () => {
    expect(prog().run(['-ip-masq'])).toMatchObject({ ipMasq: true });
    expect(prog().run(['--ip-masq=false'])).toMatchObject({ ipMasq: false });
    expect(prog().run(['-ip-masq=1'])).toMatchObject({ ipMasq: true });
    expect(goFlagArgv(['--ip-masq', 'false'], new Set(['ip-masq']))).toEqual(['--ip-masq=true', 'false']);
    expect(() => prog().run(['--ip-masq', 'false'])).toThrow();
  });
  it('leaves -h and everything after -- alone', () => {
    expect(goFlagArgv(['-h', '--', '-x'], new Set())).toEqual(['-h', '--', '-x']);
  });
  it('FLANNELD_ is read, WEFTD_ wins, the command line wins over both', () => {
    expect(prog({ FLANNELD_HEALTHZ_PORT: '1' }).run([])).toMatchObject({ healthzPort: 1 });
    expect(prog({ FLANNELD_HEALTHZ_PORT: '1', WEFTD_HEALTHZ_PORT: '2' }).run([])).toMatchObject({ healthzPort: 2 });
    expect(prog({ FLANNELD_HEALTHZ_PORT: '1', WEFTD_HEALTHZ_PORT: '2' }).run(['-healthz-port=3'])).toMatchObject({ healthzPort: 3 });
    expect(prog({ FLANNELD_IP_MASQ: 'TRUE' }).run([])).toMatchObject({ ipMasq: true });
  });
  it('a bad FLANNELD_ value names the variable', () => {
    expect(() => prog({ FLANNELD_HEALTHZ_PORT: 'abc' }).run([])).toThrow(/FLANNELD_HEALTHZ_PORT/);
  });
});
