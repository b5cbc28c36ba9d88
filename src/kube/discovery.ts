import type { KubeClient } from './client.js';
import { KubeApiError } from './errors.js';

interface APIGroup {
  name?: string;
  versions?: Array<{ groupVersion?: string; version?: string }>;
  preferredVersion?: { version?: string };
}

/**
 * The versions a server serves for an API group (GET /apis/<group>), e.g.
 * ['v1', 'v1beta1'] for discovery.k8s.io on 1.21+, ['v1beta1'] on 1.20;
 * [] when the group is not served at all (404).
 */
export async function servedVersions(client: KubeClient, group: string, signal?: AbortSignal): Promise<string[]> {
  try {
    const g = await client.get<APIGroup>(`/apis/${encodeURIComponent(group)}`, { signal });
    return (g.versions ?? []).map((v) => v.version).filter((v): v is string => typeof v === 'string');
  } catch (err) {
    if (err instanceof KubeApiError && err.status === 404) return [];
    throw err;
  }
}
