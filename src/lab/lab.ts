// The lab's programmatic API, one concern per file.
export { labUp, labNetworkConfig, type LabUpOptions } from './up.js';
export { labDown, type LabDownResult } from './down.js';
export { labStatus, type LabStatus, type LabHostStatus, type LabPodStatus } from './status.js';
export { labTarget, hostNetnsOf, podNetnsOf, labExec, labSpawn, labStop, labSignal, stopWeftd, startWeftd, stopProxy, startProxy, stopEtcd, startEtcd, labEtcd, type LabSpawned } from './ops.js';
export { labEnv, listNetns } from './common.js';
export { runDemo, demoManifests, DEMO_SERVICE, type DemoOptions, type DemoResult } from './demo.js';
