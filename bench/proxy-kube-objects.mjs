// The bench's objects, shared by bench/proxy-kube.mjs and its loader: Service i
// (ClusterIP in 10.96.0.0/12) with two endpoints, one in 10.244/16 and one in
// 10.245/16; changed endpoints come from 10.246/16. Valid for i < 65536.
export const NS = 'bench';
export const NODE = 'bench-node';
const quad = (base, i) => `${base}.${(i >> 8) & 255}.${i & 255}`;
export const svcName = (i) => `svc-${i}`;
export const sliceName = (i) => `svc-${i}-a`;
export const clusterIp = (i) => quad('10.100', i);
export const endpointIps = (i) => [quad('10.244', i), quad('10.245', i)];
export const changedIp = (k) => quad('10.246', k);
