/** A VtepMAC from etcd is untrusted: this says whether it can serve as a VTEP's address. */
export type VtepMacCheck = { ok: true; mac: string } | { ok: false; reason: string };

const MAC_FORM = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;

/**
 * Well-formed (six colon-separated hex octets), unicast (the group bit of the
 * first octet clear: no multicast, no broadcast) and not all-zero. Pure.
 */
export function checkVtepMac(value: unknown): VtepMacCheck {
  if (typeof value !== 'string') return { ok: false, reason: `not a string (${value === null ? 'null' : typeof value})` };
  const mac = value.toLowerCase();
  if (!MAC_FORM.test(mac)) return { ok: false, reason: `"${value.slice(0, 40)}" is not a MAC address` };
  if (mac === '00:00:00:00:00:00') return { ok: false, reason: 'all-zero MAC' };
  if (parseInt(mac.slice(0, 2), 16) & 1) return { ok: false, reason: `${mac} is a multicast or broadcast MAC` };
  return { ok: true, mac };
}

/** BackendData.VtepMAC of a lease value, field names matched case-insensitively (as flannel's JSON). */
export function rawVtepMac(backendData: unknown): unknown {
  if (!backendData || typeof backendData !== 'object') return undefined;
  const key = Object.keys(backendData).find((k) => k.toLowerCase() === 'vtepmac');
  return key === undefined ? undefined : (backendData as Record<string, unknown>)[key];
}
