import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/async.js';
import { run } from '../../src/exec/run.js';
import { labDown, labExec, labStatus, labUp } from '../../src/lab/index.js';
import { hostKubeconfigPath } from '../../src/lab/kube.js';
import { KUBE_SKIP_MESSAGE, kubeApiserverPath, kubectlPath } from '../helpers/kube.js';
import { isRoot } from '../helpers/netns.js';
import { netnsOf, pidAlive, uniqueLabId } from '../helpers/lab-util.js';

const built = kubeApiserverPath() !== undefined;
if (isRoot && !built) console.warn(`lab-kube: skipped: ${KUBE_SKIP_MESSAGE}`);

/** `lab up --control-plane kubernetes --subnet-manager kubernetes`: the API server in the switch, weftd from Node podCIDRs. */
describe.skipIf(!isRoot || !built)('lab with the Kubernetes control plane', () => {
  const id = uniqueLabId('kc');
  afterAll(async () => {
    await labDown(id).catch(() => {});
  });

  it('runs weftd --kube-subnet-mgr and weft-proxy from a real kube-apiserver; pods ping across; down removes it all', async () => {
    await labUp({ id, hosts: 2, podsPerHost: 1, backend: 'host-gw', controlPlane: 'kubernetes', subnetManager: 'kubernetes' });
    const st = labStatus(id);
    expect(st.controlPlane).toMatchObject({ kind: 'kubernetes', subnetManager: 'kubernetes', running: true });
    const apiPid = st.controlPlane.pid!;
    // Each host's Node, read with that host's own kubeconfig from inside its namespace.
    const h1 = st.hosts[0]!;
    const r = await run(kubectlPath(), [`--kubeconfig=${hostKubeconfigPath(id, h1.name)}`, 'get', 'nodes', '-o', 'json'], { netns: h1.netns });
    const nodes = (JSON.parse(r.stdout) as { items: Array<{ metadata: { name: string; annotations?: Record<string, string> }; spec: { podCIDR?: string } }> }).items;
    expect(nodes.map((n) => n.metadata.name).sort()).toEqual(st.hosts.map((h) => h.name).sort());
    for (const h of st.hosts) {
      const n = nodes.find((x) => x.metadata.name === h.name)!;
      expect(n.spec.podCIDR).toBe(h.subnet);
      expect(n.metadata.annotations?.['flannel.alpha.coreos.com/kube-subnet-manager']).toBe('true');
    }
    const target = st.hosts[1]!.pods[0]!;
    await waitFor(async () => (await labExec(id, st.hosts[0]!.pods[0]!.name, ['ping', '-c', '1', '-W', '1', target.ip], { allowFail: true })).code === 0,
      { timeoutMs: 20_000, intervalMs: 200, what: `ping ${target.ip} across hosts` });
    await labDown(id);
    expect(pidAlive(apiPid)).toBe(false);
    expect(await netnsOf(id)).toEqual([]);
  }, 240_000);
});
