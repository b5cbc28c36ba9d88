import { describe, expect, it } from 'vitest';
import { MAX_REQUEST, decodeRequest, decodeResponse, encodeCniError, encodeRequest, encodeResponse, requestFrameLength } from '../../../src/cni/protocol.js';
import { masqChainName, renderMasqAdd, renderMasqDelete, staleMasqChains } from '../../../src/cni/masq.js';
import { hostVethName, parseAttachmentAlias, attachmentAlias, renderBridgeLines, renderContainerLines } from '../../../src/cni/plan.js';
import { installCni, renderConflist } from '../../../src/cni/install.js';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

describe('shim wire format', () => {
  it('round-trips requests and responses, and waits for the whole frame', () => {
    const buf = encodeRequest({ env: { CNI_COMMAND: 'ADD', CNI_ARGS: 'A=1;B=2' }, stdin: '{"x":"ü"}' });
    expect(decodeRequest(buf.subarray(0, buf.length - 1))).toBeUndefined();
    expect(decodeRequest(buf)).toEqual({ env: { CNI_COMMAND: 'ADD', CNI_ARGS: 'A=1;B=2' }, stdin: '{"x":"ü"}' });
    const r = encodeResponse(7, 'out', 'err');
    expect(decodeResponse(r.subarray(0, 13))).toBeUndefined();
    expect(decodeResponse(r)).toEqual({ exitCode: 7, stdout: 'out', stderr: 'err' });
    expect(() => decodeRequest(Buffer.from('XXXX00000000'))).toThrow(/magic/);
  });
  it('knows the frame length from the header and refuses a request over MAX_REQUEST before its body', () => {
    const buf = encodeRequest({ env: { CNI_COMMAND: 'ADD' }, stdin: 'x'.repeat(100) });
    expect(requestFrameLength(buf.subarray(0, 3))).toEqual({ known: false, length: 8 });
    expect(requestFrameLength(buf.subarray(0, 8))).toEqual({ known: false, length: 12 + 15 });
    expect(requestFrameLength(buf.subarray(0, 27))).toEqual({ known: true, length: buf.length });
    const head = (envLen: number, stdinLen?: number) => {
      const b = Buffer.alloc(12 + (stdinLen === undefined ? 0 : envLen));
      b.write('WCN1');
      b.writeUInt32BE(envLen, 4);
      if (stdinLen !== undefined) b.writeUInt32BE(stdinLen, 8 + envLen);
      return b.subarray(0, stdinLen === undefined ? 8 : 12 + envLen);
    };
    // Only 8 bytes of a 4 MiB env: refused at once (nothing else is buffered).
    expect(() => requestFrameLength(head(4 * 1024 * 1024))).toThrow(expect.objectContaining({ code: 'ERR_CNI_WIRE', reason: 'oversized' }));
    expect(() => decodeRequest(head(4 * 1024 * 1024))).toThrow(expect.objectContaining({ reason: 'oversized' }));
    // env and stdin each under the cap, together over it.
    expect(() => requestFrameLength(head(10, MAX_REQUEST - 9))).toThrow(expect.objectContaining({ reason: 'oversized', details: expect.objectContaining({ stdinLen: MAX_REQUEST - 9 }) }));
    expect(requestFrameLength(head(10, MAX_REQUEST - 10))).toEqual({ known: true, length: 12 + MAX_REQUEST });
    expect(() => requestFrameLength(Buffer.from('XXXX0000'))).toThrow(expect.objectContaining({ reason: 'magic' }));
  });
  it('answers server-side refusals in CNI error shape', () => {
    const r = decodeResponse(encodeCniError(11, 'busy'))!;
    expect(r.exitCode).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual({ cniVersion: '1.0.0', code: 11, msg: 'busy' });
  });
});

describe('masquerade rules', () => {
  const spec = { chain: masqChainName('n', 'c1', 'eth0'), comment: 'weft net=n id=c1 if=eth0', ip: '10.244.1.2', subnet: '10.244.1.0/24' };
  it('names chains WEFT-CNI-<16 hex> (within the 28-char limit)', () => {
    expect(spec.chain).toMatch(/^WEFT-CNI-[0-9A-F]{16}$/);
    expect(masqChainName('n', 'c2', 'eth0')).not.toBe(spec.chain);
  });
  it('renders the chain and the jump once; deletes both', () => {
    const add = renderMasqAdd('*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n', spec);
    expect(add).toBe(
      [
        '*nat',
        `:${spec.chain} - [0:0]`,
        `-A ${spec.chain} -d 10.244.1.0/24 -m comment --comment "weft net=n id=c1 if=eth0" -j ACCEPT`,
        `-A ${spec.chain} ! -d 224.0.0.0/4 -m comment --comment "weft net=n id=c1 if=eth0" -j MASQUERADE`,
        `-A POSTROUTING -s 10.244.1.2/32 -m comment --comment "weft net=n id=c1 if=eth0" -j ${spec.chain}`,
        'COMMIT',
        '',
      ].join('\n'),
    );
    const saved = `*nat\n:POSTROUTING ACCEPT [0:0]\n:${spec.chain} - [0:0]\n-A POSTROUTING -s 10.244.1.2/32 -m comment --comment "weft net=n id=c1 if=eth0" -j ${spec.chain}\nCOMMIT\n`;
    expect(renderMasqAdd(saved, spec)).not.toContain('-A POSTROUTING');
    expect(renderMasqDelete(saved, new Set([spec.chain]))).toBe(
      `*nat\n-D POSTROUTING -s 10.244.1.2/32 -m comment --comment "weft net=n id=c1 if=eth0" -j ${spec.chain}\n-F ${spec.chain}\n-X ${spec.chain}\nCOMMIT\n`,
    );
    expect(renderMasqDelete('*nat\nCOMMIT\n', new Set([spec.chain]))).toBe('');
    expect([...staleMasqChains(saved, 'n', new Set(['c9/eth0']))]).toEqual([spec.chain]);
    expect([...staleMasqChains(saved, 'n', new Set(['c1/eth0']))]).toEqual([]);
    expect([...staleMasqChains(saved, 'other', new Set())]).toEqual([]);
  });
});

describe('ip batch rendering', () => {
  it('derives the host veth name and alias from the attachment', () => {
    expect(hostVethName('n', 'c1', 'eth0')).toMatch(/^veth[0-9a-f]{8}$/);
    expect(hostVethName('n', 'c1', 'eth0')).toBe(hostVethName('n', 'c1', 'eth0'));
    expect(parseAttachmentAlias(attachmentAlias('n', 'c1', 'eth0'))).toEqual({ network: 'n', containerId: 'c1', ifname: 'eth0' });
  });
  it('creates a missing bridge, fixes an existing one', () => {
    const plan = { bridge: 'weft0', gatewayCidr: '10.244.1.1/24', mtu: 1450 };
    expect(renderBridgeLines(undefined, plan, '02:00:00:00:00:01')).toEqual([
      'link add name weft0 address 02:00:00:00:00:01 mtu 1450 type bridge',
      'addr replace 10.244.1.1/24 dev weft0',
      'link set dev weft0 up',
    ]);
    const old = { name: 'weft0', isBridge: true, mac: 'x', up: true, mtu: 1450, addrs: ['10.244.9.1/24'] };
    expect(renderBridgeLines(old, plan, 'y')).toEqual(['addr del 10.244.9.1/24 dev weft0', 'addr replace 10.244.1.1/24 dev weft0']);
    expect(renderBridgeLines({ ...old, addrs: ['10.244.1.1/24'] }, plan, 'y')).toEqual([]);
  });
  it('puts routes after the link is up', () => {
    const lines = renderContainerLines({ address: '10.244.1.5/24', ifname: 'eth0', gateway: '10.244.1.1', network: '10.244.0.0/16', defaultRoute: true } as never);
    expect(lines).toEqual([
      'addr add 10.244.1.5/24 dev eth0',
      'link set dev eth0 up',
      'route append 10.244.0.0/16 via 10.244.1.1 dev eth0',
      'route append default via 10.244.1.1 dev eth0',
    ]);
  });
});

describe('install-cni', () => {
  it('renders a conflist with portmap chained when asked', () => {
    const c = JSON.parse(renderConflist({ withPortmap: true, weftConf: { bridge: 'weft0' } }));
    expect(c).toEqual({ cniVersion: '1.0.0', name: 'weft', plugins: [{ type: 'weft', capabilities: { ips: true, mac: true }, bridge: 'weft0' }, { type: 'portmap', capabilities: { portMappings: true } }] });
  });
  it('installs the shim, the bundle and the conflist', () => {
    const d = mkdtempSync(join(tmpdir(), 'weft-cni-inst-'));
    try {
      writeFileSync(join(d, 'weft'), 'shim');
      writeFileSync(join(d, 'weft-cni.cjs'), 'bundle');
      const files = installCni({ sourceDir: d, binDir: join(d, 'bin'), confDir: join(d, 'conf') });
      expect(files).toEqual([join(d, 'bin/weft-cni.cjs'), join(d, 'bin/weft'), join(d, 'conf/10-weft.conflist')]);
      expect(statSync(join(d, 'bin/weft')).mode & 0o777).toBe(0o755);
      expect(JSON.parse(readFileSync(join(d, 'conf/10-weft.conflist'), 'utf8')).plugins[0].type).toBe('weft');
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
