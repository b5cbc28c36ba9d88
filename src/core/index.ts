export * from './errors.js';
export * from './ip.js';
export * from './log.js';
export * from './undo.js';
export * from './clock.js';
export * from './async.js';
export * from './runner.js';
