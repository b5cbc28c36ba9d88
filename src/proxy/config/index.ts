export { ProxyConfigError } from './errors.js';
export { parseGoDuration, formatGoDuration } from './go-duration.js';
export { parseKubeProxyConfig, encodeKubeProxyConfig, KUBE_PROXY_API_VERSION, KUBE_PROXY_KIND, type KubeProxyConfiguration } from './kubeproxy-config.js';
export { resolveSettings, configzOf, levelOfVerbosity, DEFAULT_SETTINGS, type ProxySettings, type FlagSettings, type ResolvedSettings } from './settings.js';
export { addProxyFlags, flagLayer, parseFeatureGates, PROXY_FLAGS } from './flags.js';
export { loadKubeProxyConfig, setOomScoreAdj } from './load.js';
