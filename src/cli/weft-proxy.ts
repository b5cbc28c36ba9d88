#!/usr/bin/env node
// The bin is this small on purpose. Node opens its inspector on 127.0.0.1:9229 at SIGUSR1 until a
// JS listener exists, and every static import is loaded before any module runs: measured here,
// a SIGUSR1 300 ms after start still opened the inspector when the whole CLI was imported
// statically. So signals.ts (no imports) runs first, and the rest loads afterwards.
import './signals.js';

await import('./weft-proxy-main.js');
