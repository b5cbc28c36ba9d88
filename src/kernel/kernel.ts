import { IpAddresses, type Addresses } from './addresses.js';
import { BridgeFdb, type Fdb } from './fdb.js';
import { IpLinks, type Links } from './links.js';
import { IpLinkWatcher, type LinkWatcher } from './monitor.js';
import { IpNeighbours, type Neighbours } from './neighbours.js';
import { EthtoolOffloads, type Offloads } from './offload.js';
import { IpRoutes, type Routes } from './routes.js';
import { ProcSysctl, type Sysctl } from './sysctl.js';
import type { Logger } from '../core/log.js';

/** Every kernel adapter of one network namespace. FakeKernel is the in-memory twin. */
export interface Kernel {
  links: Links;
  addrs: Addresses;
  routes: Routes;
  neighs: Neighbours;
  fdb: Fdb;
  sysctl: Sysctl;
  linkWatcher: LinkWatcher;
  offloads: Offloads;
}

/** The real adapters; `netns` names a namespace to act in (tests), else the current one. */
export function createKernel(opts: { netns?: string; log?: Logger } = {}): Kernel {
  const { netns } = opts;
  return {
    links: new IpLinks(netns),
    addrs: new IpAddresses(netns),
    routes: new IpRoutes(netns),
    neighs: new IpNeighbours(netns),
    fdb: new BridgeFdb(netns),
    sysctl: new ProcSysctl(netns),
    linkWatcher: new IpLinkWatcher({ netns, ...(opts.log ? { log: opts.log } : {}) }),
    offloads: new EthtoolOffloads(netns),
  };
}
