import { WeftError } from '../core/errors.js';

/** Kubernetes subnet manager set-up is wrong (annotation prefix, node name, pod lookup). */
export class KubeSubnetError extends WeftError {
  override readonly code: string = 'ERR_KUBE_SUBNET';
}

/** No node name: NODE_NAME unset and POD_NAME/POD_NAMESPACE missing or their Pod has no spec.nodeName. */
export class KubeNodeNameError extends KubeSubnetError {
  override readonly code = 'ERR_KUBE_NODE_NAME';
}
