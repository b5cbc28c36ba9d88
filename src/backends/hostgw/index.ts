import { registerBackend } from '../backend.js';
import { HostGwBackend } from './hostgw.js';

export { HostGwBackend, hostGwRoute, type HostGwOptions } from './hostgw.js';
export * from './plan.js';
export { ensureIpForward } from './forward.js';

registerBackend('host-gw', (ctx) => new HostGwBackend(ctx, ctx.kernel ? { kernel: ctx.kernel } : {}));
