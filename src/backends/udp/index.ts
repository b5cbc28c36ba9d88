import { registerBackend } from '../backend.js';
import { UdpBackend } from './udp.js';

// Registering does not load the native addon: that happens in prepare(), so
// a host without the addon can still run the other backends.
registerBackend('udp', (ctx) => new UdpBackend(ctx));

export * from './config.js';
export * from './metrics.js';
export * from './native.js';
export * from './peers.js';
export * from './udp.js';
