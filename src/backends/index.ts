// Importing this module registers every built-in backend with the registry in
// ./backend.ts (each backend's index registers itself).
import './hostgw/index.js';
import './vxlan/index.js';
import './udp/index.js';
