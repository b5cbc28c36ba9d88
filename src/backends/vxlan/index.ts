import { registerBackend } from '../backend.js';
import { VxlanBackend } from './vxlan.js';

export { VxlanBackend, type VxlanBackendData, type VxlanOptions } from './vxlan.js';
export * from './config.js';
export * from './plan.js';
export * from './device.js';
export * from './state.js';
export * from './mac.js';
export * from './peer-filter.js';

registerBackend(
  'vxlan',
  (ctx) =>
    new VxlanBackend(ctx, {
      ...(ctx.kernel ? { kernel: ctx.kernel } : {}),
      ...(ctx.nft ? { nft: ctx.nft } : {}),
      ...(ctx.vxlanPeerFilter !== undefined ? { peerFilter: ctx.vxlanPeerFilter } : {}),
    }),
);
