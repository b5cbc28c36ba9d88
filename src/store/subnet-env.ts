import { closeSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { InvalidArgumentError, WeftError } from '../core/errors.js';
import { formatIPv4, nthIP, parseCidr, type IPv4Net } from '../core/ip.js';

/** Contents of subnet.env (flannel's format). */
export interface SubnetEnv {
  /** FLANNEL_NETWORK */
  network: IPv4Net;
  /** FLANNEL_SUBNET network part (the file holds "<subnet>.1/<len>"). */
  subnet: IPv4Net;
  /** FLANNEL_MTU */
  mtu: number;
  /** FLANNEL_IPMASQ */
  ipMasq: boolean;
}

export class SubnetEnvMissingError extends WeftError {
  override readonly code = 'ERR_SUBNET_ENV_MISSING';
}

export function renderSubnetEnv(env: SubnetEnv): string {
  return [
    `FLANNEL_NETWORK=${formatIPv4(env.network.ip)}/${env.network.prefixLen}`,
    `FLANNEL_SUBNET=${formatIPv4(nthIP(env.subnet, 1))}/${env.subnet.prefixLen}`,
    `FLANNEL_MTU=${env.mtu}`,
    `FLANNEL_IPMASQ=${env.ipMasq}`,
    '',
  ].join('\n');
}

export function parseSubnetEnv(text: string, source = 'subnet.env'): SubnetEnv {
  const vars = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) vars.set(m[1]!, m[2]!.trim());
  }
  const need = (k: string) => {
    const v = vars.get(k);
    if (v === undefined || v === '') throw new InvalidArgumentError(`${source}: ${k}`, 'missing');
    return v;
  };
  const mtu = Number(need('FLANNEL_MTU'));
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) {
    throw new InvalidArgumentError(`${source}: FLANNEL_MTU`, `"${vars.get('FLANNEL_MTU')}" is not an MTU`);
  }
  return {
    network: parseCidr(need('FLANNEL_NETWORK'), `${source}: FLANNEL_NETWORK`),
    subnet: parseCidr(need('FLANNEL_SUBNET'), `${source}: FLANNEL_SUBNET`),
    mtu,
    ipMasq: (vars.get('FLANNEL_IPMASQ') ?? 'false') === 'true',
  };
}

/** Reads and parses subnet.env; SubnetEnvMissingError (naming the file) when absent. */
export function readSubnetEnv(path: string): SubnetEnv {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new SubnetEnvMissingError(`${path} does not exist (is weftd running?)`, { path });
    }
    throw err;
  }
  return parseSubnetEnv(text, path);
}

/** The subnet named in an old subnet.env, if the file exists and parses. */
export function readPreviousSubnet(path: string): IPv4Net | undefined {
  try {
    return readSubnetEnv(path).subnet;
  } catch {
    return undefined;
  }
}

/** subnet.env (or another atomically written file) could not be written: `path` names it. */
export class FileWriteError extends WeftError {
  override readonly code = 'ERR_FILE_WRITE';
}

/**
 * Writes atomically: temp file, fsync, rename (readers never see half a
 * file). On failure (a full disk: ENOSPC) the temporary file is removed and
 * the error names the file.
 */
export function writeFileAtomic(path: string, data: string, mode = 0o644): void {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    mkdirSync(dirname(path), { recursive: true });
    const fd = openSync(tmp, 'w', mode);
    try {
      const buf = Buffer.from(data);
      // writeSync may write less than asked (a nearly full disk): loop until done or an error.
      for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      /* never created, or already renamed */
    }
    const e = err as NodeJS.ErrnoException;
    throw new FileWriteError(`cannot write ${path}: ${e.message}`, { path, errno: e.code }, { cause: err });
  }
}

export function writeSubnetEnv(path: string, env: SubnetEnv): void {
  writeFileAtomic(path, renderSubnetEnv(env));
}
