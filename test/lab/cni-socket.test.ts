import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import { run } from '../../src/exec/run.js';
import { FakeCniKernel } from '../../src/cni/kernel-fake.js';
import { FakeIpamStore } from '../../src/cni/ipam/fake-store.js';
import { MAX_REQUEST, decodeResponse, encodeRequest } from '../../src/cni/protocol.js';
import { startCniServer, type CniRefusal, type CniServerOptions, type CniTimeoutPhase } from '../../src/cni/server.js';
import { isRoot } from '../helpers/netns.js';
import { CniWorkspace } from '../helpers/cni-env.js';

// None of this touches the network: the server answers VERSION (and a stalled ADD on a fake kernel) only.

const NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups'];

/** Connects as fast as it can until the stop file appears; prints what each attempt got. */
const PROBER = `
import socket, sys, os, errno, json, time
path, stop = sys.argv[1], sys.argv[2]
counts = {}
print("started", flush=True)
limit = time.time() + 150
while not os.path.exists(stop) and time.time() < limit:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        k = "connected"
    except OSError as e:
        k = errno.errorcode.get(e.errno, str(e.errno))
    s.close()
    counts[k] = counts.get(k, 0) + 1
print(json.dumps(counts), flush=True)
`;

/** One connect + send as nobody: what came back (`connect-failed:<errno>`, `closed-empty`, or the response bytes). */
const NOBODY_CLIENT = `
import socket, sys, errno
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect-failed:" + errno.errorcode.get(e.errno, "?")); sys.exit(0)
try:
    s.sendall(bytes.fromhex(sys.argv[2])); s.shutdown(socket.SHUT_WR)
    data = s.recv(65536)
except OSError as e:
    data = b""
print("closed-empty" if not data else "answered:" + data.hex())
`;

function collect(child: ChildProcess): { out: () => string } {
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  return { out: () => out };
}

const exited = (child: ChildProcess) =>
  new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())));

const fakeHandler = (): CniServerOptions['handler'] => ({ kernel: new FakeCniKernel(), storeFor: () => new FakeIpamStore() });

const versionRequest = () => encodeRequest({ env: { CNI_COMMAND: 'VERSION' }, stdin: '{"cniVersion":"1.0.0"}' });

/** A raw client: writes `payload` (or drives the socket itself), resolves with what it received once closed. */
function rawClient(path: string, payload: Buffer | ((s: ReturnType<typeof connect>) => void)): { done: Promise<Buffer>; closed: () => boolean } {
  const chunks: Buffer[] = [];
  let isClosed = false;
  const s = connect(path);
  const done = new Promise<Buffer>((resolve) => {
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => {});
    s.once('close', () => {
      isClosed = true;
      resolve(Buffer.concat(chunks));
    });
  });
  s.once('connect', () => {
    if (typeof payload === 'function') payload(s);
    else s.end(payload);
  });
  return { done, closed: () => isClosed };
}

function cniAnswer(buf: Buffer): { exitCode: number; code?: number; msg?: string } | undefined {
  const r = buf.length ? decodeResponse(buf) : undefined;
  if (!r) return undefined;
  const body = r.stdout ? (JSON.parse(r.stdout) as { code?: number; msg?: string }) : {};
  return { exitCode: r.exitCode, code: body.code, msg: body.msg };
}

describe.skipIf(!isRoot)('CNI socket: permissions, caps and deadlines', () => {
  // 0755 so that nobody can reach the paths below it: the socket's own protection is what is tested.
  const root = mkdtempSync(join(tmpdir(), 'weft-cni-sock-'));
  chmodSync(root, 0o755);
  const ws = new CniWorkspace();
  let built: Promise<void> | undefined;
  const build = () => (built ??= ws.build());
  afterAll(() => {
    rmSync(root, { recursive: true, force: true });
    ws.cleanup();
  });

  it('creates a missing socket directory 0700 and the socket 0600; nobody cannot connect', async () => {
    const sock = join(root, 'made', 'sub', 'cni.sock');
    const server = await startCniServer({ socketPath: sock, handler: fakeHandler(), shells: 1 });
    try {
      expect(statSync(join(root, 'made', 'sub')).mode & 0o777).toBe(0o700);
      expect(statSync(sock).mode & 0o777).toBe(0o600);
      const r = await run('setpriv', [...NOBODY, '/usr/bin/python3', '-c', NOBODY_CLIENT, sock, versionRequest().toString('hex')]);
      expect(r.stdout.trim()).toBe('connect-failed:EACCES');
    } finally {
      await server.close();
    }
  });

  it('refuses a socket directory others can write to or another user owns, and a path that is not a socket', async () => {
    for (const [name, mode] of [['world', 0o777], ['sticky', 0o1777], ['group', 0o775]] as const) {
      const dir = join(root, name);
      mkdirSync(dir);
      chmodSync(dir, mode);
      await expect(startCniServer({ socketPath: join(dir, 'cni.sock'), handler: fakeHandler(), shells: 1 })).rejects.toMatchObject({
        code: 'ERR_CNI_SOCKET',
        message: expect.stringContaining(dir),
      });
      expect(existsSync(join(dir, 'cni.sock'))).toBe(false);
    }
    const foreign = join(root, 'foreign');
    mkdirSync(foreign, { mode: 0o755 });
    chownSync(foreign, 65534, 65534);
    await expect(startCniServer({ socketPath: join(foreign, 'cni.sock'), handler: fakeHandler(), shells: 1 })).rejects.toMatchObject({
      code: 'ERR_CNI_SOCKET',
      message: expect.stringMatching(/owned by uid 65534/),
    });
    const file = join(root, 'file.sock');
    writeFileSync(file, 'precious');
    await expect(startCniServer({ socketPath: file, handler: fakeHandler(), shells: 1 })).rejects.toMatchObject({
      code: 'ERR_CNI_SOCKET',
      message: expect.stringContaining('not a socket'),
    });
    expect(readFileSync(file, 'utf8')).toBe('precious');
  });

  it('never lets nobody connect, not even for an instant, over 200 restarts under umask 000', async () => {
    // The directory is 0755 (others may enter it): only the socket's own mode keeps them out.
    const dir = join(root, 'restarts');
    mkdirSync(dir, { mode: 0o755 });
    const sock = join(dir, 'cni.sock');
    const stop = join(root, 'restarts.stop');
    const prober = spawn('setpriv', [...NOBODY, '/usr/bin/python3', '-c', PROBER, sock, stop], { stdio: ['ignore', 'pipe', 'pipe'] });
    const probe = collect(prober);
    const oldMask = process.umask(0);
    try {
      await waitFor(() => probe.out().includes('started'), { timeoutMs: 20_000 });
      for (let i = 0; i < 200; i++) {
        const server = await startCniServer({ socketPath: sock, handler: fakeHandler(), shells: 1 });
        await server.close();
      }
    } finally {
      process.umask(oldMask);
      writeFileSync(stop, '');
      await Promise.race([exited(prober), new Promise((r) => setTimeout(r, 20_000))]);
      if (prober.exitCode === null) prober.kill('SIGKILL');
    }
    const counts = JSON.parse(probe.out().trim().split('\n').pop()!) as Record<string, number>;
    console.log('nobody connect attempts over 200 restarts:', counts);
    expect(counts.connected ?? 0).toBe(0);
    // It did hit the socket while it existed (and was refused), so the probe was not idle.
    expect(counts.EACCES ?? 0).toBeGreaterThan(0);
  });

  it('drops a caller that is neither root nor its own user (SO_PEERCRED), even when the socket mode would let it in', async () => {
    const dir = join(root, 'peer');
    mkdirSync(dir, { mode: 0o755 });
    const sock = join(dir, 'cni.sock');
    const refused: CniRefusal[] = [];
    const server = await startCniServer({
      socketPath: sock,
      handler: fakeHandler(),
      shells: 1,
      metrics: { refused: (r) => refused.push(r), timedOut: () => {} },
    });
    try {
      expect(server.checksPeer).toBe(true);
      chmodSync(sock, 0o666); // simulate a mistake in the permissions
      const r = await run('setpriv', [...NOBODY, '/usr/bin/python3', '-c', NOBODY_CLIENT, sock, versionRequest().toString('hex')]);
      expect(r.stdout.trim()).toBe('closed-empty');
      expect(server.stats.refused.peer).toBe(1);
      expect(refused).toEqual(['peer']);
      // Root still gets answers.
      const ok = cniAnswer(await rawClient(sock, versionRequest()).done);
      expect(ok?.exitCode).toBe(0);
    } finally {
      await server.close();
    }
  });

  it('refuses an oversized request from its header: the shim relays a CNI error instead of dying of SIGPIPE', async () => {
    await build();
    const dir = join(root, 'big');
    const sock = join(dir, 'cni.sock');
    const refused: CniRefusal[] = [];
    const server = await startCniServer({ socketPath: sock, handler: fakeHandler(), shells: 1, metrics: { refused: (r) => refused.push(r), timedOut: () => {} } });
    try {
      const big = JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'weft', pad: 'x'.repeat(2 * MAX_REQUEST) });
      const r = await run(ws.shim, [], { env: { PATH: process.env.PATH, WEFT_CNI_SOCKET: sock, CNI_COMMAND: 'VERSION' }, input: big, allowFail: true });
      expect(r.code).toBe(1);
      expect(JSON.parse(r.stdout)).toMatchObject({ code: 6, msg: expect.stringContaining('limit') });
      expect(refused).toEqual(['oversized']);
      const small = await run(ws.shim, [], { env: { PATH: process.env.PATH, WEFT_CNI_SOCKET: sock, CNI_COMMAND: 'VERSION' }, input: '{"cniVersion":"1.0.0"}', allowFail: true });
      expect(small.code).toBe(0);
      expect(JSON.parse(small.stdout).supportedVersions).toContain('1.0.0');
    } finally {
      await server.close();
    }
  });

  it('drops a slow client at the whole-request deadline and answers 11 for a request not handled in time', async () => {
    const dir = join(root, 'slow');
    const sock = join(dir, 'cni.sock');
    const timedOut: CniTimeoutPhase[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const kernel = new FakeCniKernel();
    kernel.addNetns('/var/run/netns/fake-slow');
    const subnetFile = join(root, 'slow-subnet.env');
    writeFileSync(subnetFile, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
    const server = await startCniServer({
      socketPath: sock,
      shells: 1,
      limits: { receiveTimeoutMs: 1500, handleTimeoutMs: 1500 },
      handler: { kernel, storeFor: () => new FakeIpamStore(), fault: (step) => (step === 'reserved' ? gate : Promise.resolve()) },
      metrics: { refused: () => {}, timedOut: (p) => timedOut.push(p) },
    });
    try {
      // Declares a 200-byte env, then sends one byte every 100 ms: 20 s to finish, far past the 1.5 s deadline.
      const total = 200;
      let sent = 0;
      let timer: NodeJS.Timeout | undefined;
      const slow = rawClient(sock, (s) => {
        const head = Buffer.alloc(8);
        head.write('WCN1');
        head.writeUInt32BE(total, 4);
        s.write(head);
        timer = setInterval(() => {
          if (s.destroyed || sent >= total) return clearInterval(timer);
          s.write('x');
          sent++;
        }, 100);
      });
      const got = cniAnswer(await Promise.race([slow.done, new Promise<Buffer>((_, rej) => setTimeout(() => rej(new Error('slow client never dropped')), 30_000))]));
      clearInterval(timer);
      expect(sent).toBeLessThan(total);
      expect(got).toMatchObject({ exitCode: 1, code: 11, msg: expect.stringContaining('not received') });
      expect(server.stats.timedOut.receive).toBe(1);

      // An ADD stuck inside the handler: the caller gets code 11 at the handling deadline, not a hang.
      const add = encodeRequest({
        env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'slow1', CNI_NETNS: '/var/run/netns/fake-slow', CNI_IFNAME: 'eth0', CNI_PATH: '/x' },
        stdin: JSON.stringify({ cniVersion: '1.0.0', name: 'slownet', type: 'weft', subnetFile, dataDir: join(root, 'slow-data') }),
      });
      const stuck = cniAnswer(await rawClient(sock, add).done);
      expect(stuck).toMatchObject({ exitCode: 1, code: 11, msg: expect.stringContaining('not handled') });
      expect(server.stats.timedOut.handle).toBe(1);
      expect(timedOut).toEqual(['receive', 'handle']);
      // The slot stays taken until the handler settles (its kernel work cannot be cancelled), then frees.
      expect(server.stats.inFlight).toBe(1);
      release();
      await waitFor(() => server.stats.inFlight === 0, { timeoutMs: 10_000 });
      expect(cniAnswer(await rawClient(sock, versionRequest()).done)?.exitCode).toBe(0);
    } finally {
      release();
      await server.close();
    }
  });

  it('runs at most maxInFlight requests at once (the rest wait in order) and answers 11 past maxConnections', async () => {
    const sock = join(root, 'caps', 'cni.sock');
    const refused: CniRefusal[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const kernel = new FakeCniKernel();
    const subnetFile = join(root, 'caps-subnet.env');
    writeFileSync(subnetFile, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.6.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
    const store = new FakeIpamStore();
    const server = await startCniServer({
      socketPath: sock,
      shells: 1,
      limits: { maxInFlight: 2, maxConnections: 6 },
      handler: { kernel, storeFor: () => store, fault: (step) => (step === 'reserved' ? gate : Promise.resolve()) },
      metrics: { refused: (r) => refused.push(r), timedOut: () => {} },
    });
    try {
      const adds = Array.from({ length: 5 }, (_, i) => {
        kernel.addNetns(`/var/run/netns/fake-cap${i}`);
        return rawClient(
          sock,
          encodeRequest({
            env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: `cap${i}`, CNI_NETNS: `/var/run/netns/fake-cap${i}`, CNI_IFNAME: 'eth0', CNI_PATH: '/x' },
            stdin: JSON.stringify({ cniVersion: '1.0.0', name: 'capnet', type: 'weft', subnetFile, dataDir: join(root, 'caps-data') }),
          }),
        );
      });
      await waitFor(() => server.stats.inFlight === 2 && server.stats.queued === 3, { timeoutMs: 10_000 });
      // Five open and one more: the sixth is still accepted; the seventh is refused at once.
      const sixth = rawClient(sock, versionRequest());
      await waitFor(() => server.stats.open === 6, { timeoutMs: 10_000 });
      const seventh = cniAnswer(await rawClient(sock, versionRequest()).done);
      expect(seventh).toMatchObject({ exitCode: 1, code: 11, msg: expect.stringContaining('connections open') });
      expect(refused).toEqual(['busy']);
      expect(server.stats.inFlight).toBe(2);
      release();
      const answers = (await Promise.all(adds.map((c) => c.done))).map(cniAnswer);
      expect(answers.map((a) => a?.exitCode)).toEqual([0, 0, 0, 0, 0]);
      expect(cniAnswer(await sixth.done)?.exitCode).toBe(0);
    } finally {
      release();
      await server.close();
    }
  });

  it('100 requests of 4 MiB and a slow client neither stall a normal request nor grow the server past 200 MB; 100 of 1 MiB all get answers', async () => {
    await build();
    const dir = join(root, 'storm');
    const sock = join(dir, 'cni.sock');
    // The standalone server (`weft-cni.cjs serve`) in its own process, with the default limits, so its RSS is its own.
    const child = spawn(process.execPath, [join(ws.binDir, 'weft-cni.cjs'), 'serve', '--socket', sock], {
      env: { PATH: process.env.PATH, WEFT_CNI_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const logs = collect(child);
    const status = (key: string) => Number(/(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8').split('\n').find((l) => l.startsWith(key))!)![1]) / 1024;
    /** Normal calls through the real shim, one after another; each must answer (the run itself is bounded). */
    const normalCalls = async (n: number, probe: () => boolean) => {
      const out: Array<{ code: number | null; probe: boolean }> = [];
      for (let i = 0; i < n; i++) {
        const r = await run(ws.shim, [], {
          env: { PATH: process.env.PATH, WEFT_CNI_SOCKET: sock, CNI_COMMAND: 'VERSION' },
          input: '{"cniVersion":"1.0.0"}',
          allowFail: true,
          timeoutMs: 30_000,
        });
        expect(JSON.parse(r.stdout).supportedVersions).toContain('1.0.0');
        out.push({ code: r.code, probe: probe() });
      }
      return out;
    };
    try {
      await waitFor(() => existsSync(sock) && logs.out().includes('cni server listening'), { timeoutMs: 30_000 });
      const before = status('VmRSS:');

      // Phase 1, the reported case: 100 senders of 4 MiB (refused from the header, the body never buffered)
      // and a client sending one byte a second.
      const body4 = Buffer.alloc(4 * 1024 * 1024, 0x41);
      const head4 = Buffer.alloc(8);
      head4.write('WCN1');
      head4.writeUInt32BE(body4.length, 4);
      const storm = Array.from({ length: 100 }, () => rawClient(sock, (s) => { s.write(head4); s.end(body4); }));
      let slowSent = 0;
      let slowTimer: NodeJS.Timeout | undefined;
      const slow = rawClient(sock, (s) => {
        const head = Buffer.alloc(8);
        head.write('WCN1');
        head.writeUInt32BE(1000, 4);
        s.write(head);
        slowTimer = setInterval(() => (s.destroyed ? clearInterval(slowTimer) : (s.write('z'), slowSent++)), 1000);
      });
      const stormOpen = () => storm.some((c) => !c.closed());
      const normal1 = await normalCalls(5, () => !slow.closed());
      expect(normal1.map((n) => n.code)).toEqual([0, 0, 0, 0, 0]);
      // The first normal answer came while the slow client still held its connection.
      expect(normal1[0]!.probe).toBe(true);
      const big = (await Promise.all(storm.map((c) => c.done))).map(cniAnswer);
      expect(stormOpen()).toBe(false);
      // A 4 MiB sender may see EPIPE before it reads the refusal; whatever it read is code 4.
      for (const a of big) if (a) expect(a).toMatchObject({ exitCode: 1, code: 4 });
      const slowGot = cniAnswer(await Promise.race([slow.done, new Promise<Buffer>((_, rej) => setTimeout(() => rej(new Error('slow client never dropped')), 60_000))]));
      clearInterval(slowTimer);
      expect(slowGot).toMatchObject({ code: 11, msg: expect.stringContaining('not received') });
      expect(slowSent).toBeLessThan(1000);
      await waitFor(() => logs.out().includes('request not received in time'), { timeoutMs: 10_000 });
      expect(logs.out()).toContain('refused oversized CNI request');
      const peak1 = status('VmHWM:');
      expect(peak1).toBeLessThan(200);

      // Phase 2: 100 valid requests just under the cap. They take large-request reservations in turn (16 at
      // once): all are answered (none starves behind partial ones), and normal calls still go through.
      const near = encodeRequest({ env: { CNI_COMMAND: 'VERSION' }, stdin: JSON.stringify({ cniVersion: '1.0.0', pad: 'y'.repeat(MAX_REQUEST - 100) }) });
      const nearClients = Array.from({ length: 100 }, () => rawClient(sock, near));
      const normal2 = await normalCalls(3, () => true);
      expect(normal2.map((n) => n.code)).toEqual([0, 0, 0]);
      const nearAnswers = (await Promise.all(nearClients.map((c) => c.done))).map(cniAnswer);
      expect(nearAnswers.filter((a) => a?.exitCode === 0).length).toBe(100);
      const peak2 = status('VmHWM:');
      console.log(
        `storm: server RSS before ${before.toFixed(1)} MB, peak after 100 x 4 MiB + slow client ${peak1.toFixed(1)} MB, ` +
          `after 100 x 1 MiB ${peak2.toFixed(1)} MB; 4 MiB senders that read the refusal: ${big.filter(Boolean).length}/100`,
      );
      // Mostly garbage awaiting GC (each 1 MiB request is copied to strings and parsed); live data is 16 MiB at most.
      expect(peak2).toBeLessThan(300);
    } finally {
      child.kill('SIGTERM');
      await Promise.race([exited(child), new Promise((r) => setTimeout(r, 15_000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});
