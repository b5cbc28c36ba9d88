import { isIPv4 } from '../core/ip.js';
import { InvalidEnvError } from './errors.js';

export const CNI_COMMANDS = ['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS'] as const;
export type CniCommand = (typeof CNI_COMMANDS)[number];

/** Parsed CNI_ARGS (only the keys weft understands; the rest are checked against IgnoreUnknown). */
export interface CniArgs {
  ignoreUnknown: boolean;
  k8sPodNamespace?: string;
  k8sPodName?: string;
  k8sPodInfraContainerId?: string;
  k8sPodUid?: string;
  /** IP= : a requested IPv4 address (host-local accepts one per range; weft has one range). */
  ip?: string;
}

/** The CNI_* environment, validated for the command. */
export interface CniEnv {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifname: string;
  args: CniArgs;
  path: string[];
}

const KNOWN_ARGS = new Set(['IgnoreUnknown', 'K8S_POD_NAMESPACE', 'K8S_POD_NAME', 'K8S_POD_INFRA_CONTAINER_ID', 'K8S_POD_UID', 'IP']);

/** `K=V;K=V` into CniArgs. Unknown keys are an error unless IgnoreUnknown is true/1. */
export function parseCniArgs(text: string | undefined): CniArgs {
  const out: CniArgs = { ignoreUnknown: false };
  if (!text) return out;
  const pairs: Array<[string, string]> = [];
  for (const part of text.split(';')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new InvalidEnvError('CNI_ARGS', `"${part}" is not KEY=VALUE`);
    pairs.push([part.slice(0, eq), part.slice(eq + 1)]);
  }
  for (const [k, v] of pairs) {
    if (k === 'IgnoreUnknown') {
      const lower = v.toLowerCase();
      if (!['1', 'true', '0', 'false'].includes(lower)) throw new InvalidEnvError('CNI_ARGS', `IgnoreUnknown="${v}" is not a boolean`);
      out.ignoreUnknown = lower === '1' || lower === 'true';
    }
  }
  for (const [k, v] of pairs) {
    switch (k) {
      case 'IgnoreUnknown':
        break;
      case 'K8S_POD_NAMESPACE':
        out.k8sPodNamespace = v;
        break;
      case 'K8S_POD_NAME':
        out.k8sPodName = v;
        break;
      case 'K8S_POD_INFRA_CONTAINER_ID':
        out.k8sPodInfraContainerId = v;
        break;
      case 'K8S_POD_UID':
        out.k8sPodUid = v;
        break;
      case 'IP':
        if (!isIPv4(v)) throw new InvalidEnvError('CNI_ARGS', `IP="${v}" is not an IPv4 address`);
        out.ip = v;
        break;
      default:
        if (!out.ignoreUnknown && !KNOWN_ARGS.has(k)) {
          throw new InvalidEnvError('CNI_ARGS', `unknown key "${k}" (set IgnoreUnknown=1 to allow)`);
        }
    }
  }
  return out;
}

/** libcni's rule: alphanumeric first, then [A-Za-z0-9_.-]. */
const CONTAINER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

export function validateContainerId(id: string): void {
  if (!CONTAINER_ID_RE.test(id)) throw new InvalidEnvError('CNI_CONTAINERID', `"${id}" must start alphanumeric and hold only [A-Za-z0-9_.-]`);
}

/** The kernel's interface-name rule (dev_valid_name) plus the length limit. */
export function validateIfname(name: string): void {
  if (name.length === 0 || name.length > 15) throw new InvalidEnvError('CNI_IFNAME', `"${name}" must be 1-15 characters`);
  if (name === '.' || name === '..' || /[/:\s]/.test(name)) throw new InvalidEnvError('CNI_IFNAME', `"${name}" is not a valid interface name`);
  // Valid for the kernel, but '#' starts a comment in ip -batch and quotes or a
  // backslash would need escaping in ip -batch and iptables-restore text.
  if (/[#"'\\]/.test(name)) throw new InvalidEnvError('CNI_IFNAME', `${JSON.stringify(name)} holds one of # " ' \\`);
}

/**
 * CNI_NETNS is a path from the runtime: absolute, no control characters (a
 * newline once injected an ip -batch command). That it is a network
 * namespace, and not the host's, is checked when it is opened (CniKernel.openNetns).
 */
export function validateNetnsPath(path: string): void {
  if (!path.startsWith('/')) throw new InvalidEnvError('CNI_NETNS', `${JSON.stringify(path)} is not an absolute path`);
  if (/[\x00-\x1f\x7f]/.test(path)) throw new InvalidEnvError('CNI_NETNS', `${JSON.stringify(path)} holds a control character (newline, NUL, ...)`);
}

/**
 * Reads the CNI_* variables and checks what the command needs: ADD and CHECK
 * need CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME; DEL needs the id and ifname
 * (the netns may be gone); VERSION, GC and STATUS need none of them.
 */
export function parseCniEnv(env: Record<string, string | undefined>): CniEnv {
  const command = env.CNI_COMMAND;
  if (!command) throw new InvalidEnvError('CNI_COMMAND', 'missing');
  if (!(CNI_COMMANDS as readonly string[]).includes(command)) throw new InvalidEnvError('CNI_COMMAND', `"${command}" is not one of ${CNI_COMMANDS.join(', ')}`);
  const cmd = command as CniCommand;
  const perAttachment = cmd === 'ADD' || cmd === 'DEL' || cmd === 'CHECK';
  const containerId = env.CNI_CONTAINERID ?? '';
  const netns = env.CNI_NETNS ?? '';
  const ifname = env.CNI_IFNAME ?? '';
  if (perAttachment) {
    if (!containerId) throw new InvalidEnvError('CNI_CONTAINERID', 'missing');
    validateContainerId(containerId);
    if (!ifname) throw new InvalidEnvError('CNI_IFNAME', 'missing');
    validateIfname(ifname);
    if (cmd !== 'DEL' && !netns) throw new InvalidEnvError('CNI_NETNS', 'missing');
    if (netns) validateNetnsPath(netns);
  }
  return {
    command: cmd,
    containerId,
    netns,
    ifname,
    args: parseCniArgs(env.CNI_ARGS),
    path: (env.CNI_PATH ?? '').split(':').filter(Boolean),
  };
}
