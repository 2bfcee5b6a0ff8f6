// sriov-cni's config, field for field, plus the older form that names the PF in `master` and lets the
// plugin pick a free VF (CNI_ARGS VF=N, or `vf`, picks one). Everything is checked before anything is
// touched; an error names the field and the value.
import * as z from 'zod/mini';
import { parseWith } from '../../lib/cni/config.ts';
import { INTERFACE_NAME, parseCniArgs } from '../../lib/cni/env.ts';
import { Code, CniError, showValue } from '../../lib/cni/errors.ts';
import type { Invocation } from '../../lib/cni/skel.ts';
import { chooseMac, isGroupMac, macString } from '../../lib/mac.ts';
import { VF_LINK_STATES, type VfChange } from '../../lib/net/vf.ts';
import { PCI_ADDRESS } from '../../lib/sysfs/pci.ts';

const pciString = z.string().check(z.refine((value) => PCI_ADDRESS.test(value.toLowerCase()), 'not a PCI address of the form 0000:03:02.3'));
const onOff = z.enum(['on', 'off']);

export const SriovFieldsSchema = z.looseObject({
  deviceID: z.optional(pciString),
  master: z.optional(z.string().check(z.regex(INTERFACE_NAME, 'not an interface name (1-15 characters, no "/", ":" or white space)'))),
  vf: z.optional(z.int().check(z.minimum(0))),
  vlan: z.optional(z.int().check(z.minimum(0), z.maximum(4094))),
  vlanQoS: z.optional(z.int().check(z.minimum(0), z.maximum(7))),
  vlanProto: z.optional(z.string().check(z.refine((value) => ['802.1q', '802.1ad'].includes(value.toLowerCase()), 'must be "802.1q" or "802.1ad"'))),
  mac: z.optional(macString),
  spoofchk: z.optional(onOff),
  trust: z.optional(onOff),
  link_state: z.optional(z.enum(VF_LINK_STATES)),
  min_tx_rate: z.optional(z.int().check(z.minimum(0))),
  max_tx_rate: z.optional(z.int().check(z.minimum(0))),
});
export type SriovFields = z.infer<typeof SriovFieldsSchema>;

/** Which VF: a PCI address (Multus' deviceID), or a PF and optionally an index on it. */
export type VfChoice = { deviceID: string } | { master: string; index?: number; field: string };

export interface SriovRequest {
  choice: VfChoice;
  /** PF-level settings the config asks for; only these are changed, and restored at DEL. */
  change: VfChange;
  /** The MAC the VF gets (admin MAC on the PF, and on its netdev), if one is asked for. */
  mac?: string;
  /** "namespace/name" from CNI_ARGS, for the operator's view. */
  pod?: string;
}

const SRIOV_ARGS = ['MAC', 'VF'] as const;

const invalid = (field: string, value: unknown, why: string): CniError =>
  new CniError(Code.InvalidConfig, `invalid network config: ${field} = ${value === undefined ? 'missing' : showValue(value)}: ${why}`);

/** The fields alone, for verbs that must not fail on a config ADD would refuse (DEL, GC). */
export const parseFields = (inv: Invocation): SriovFields => parseWith(SriovFieldsSchema, inv.raw);

/** The device ID the runtime gave: Multus puts it at the top level, a runtime with the capability in runtimeConfig. */
export function deviceIdOf(inv: Invocation, fields: SriovFields): string | undefined {
  const fromRuntime = inv.conf.runtimeConfig?.deviceID;
  if (fields.deviceID === undefined && fromRuntime !== undefined && !PCI_ADDRESS.test(fromRuntime.toLowerCase())) {
    throw invalid('runtimeConfig.deviceID', fromRuntime, 'not a PCI address of the form 0000:03:02.3');
  }
  return (fields.deviceID ?? fromRuntime)?.toLowerCase();
}

function vlanChange(fields: SriovFields): VfChange {
  const { vlan, vlanQoS, vlanProto } = fields;
  if (vlanQoS !== undefined && vlan === undefined) throw invalid('vlanQoS', vlanQoS, 'needs a vlan');
  if (vlanQoS !== undefined && vlanQoS !== 0 && vlan === 0) throw invalid('vlanQoS', vlanQoS, 'needs a non-zero vlan (vlan = 0)');
  if (vlanProto !== undefined && !vlan) throw invalid('vlanProto', vlanProto, `needs a non-zero vlan (vlan = ${vlan ?? 'missing'})`);
  if (vlan === undefined) return {};
  return { vlan, qos: vlanQoS ?? 0, proto: vlanProto?.toLowerCase() === '802.1ad' ? '802.1ad' : '802.1Q' };
}

function rateChange(fields: SriovFields): VfChange {
  const { min_tx_rate: min, max_tx_rate: max } = fields;
  if (min === undefined && max === undefined) return {};
  if (min !== undefined && max !== undefined && max !== 0 && min > max) {
    throw invalid('min_tx_rate', min, `must not exceed max_tx_rate (${max})`);
  }
  return { minTxRate: min ?? 0, maxTxRate: max ?? 0 };
}

function choiceOf(inv: Invocation, fields: SriovFields, args: Record<string, string>): VfChoice {
  const deviceID = deviceIdOf(inv, fields);
  if (deviceID !== undefined) return { deviceID };
  if (fields.master === undefined) {
    throw invalid('deviceID', undefined, 'the VF\'s PCI address is required (Multus sets it from the device plugin), or name its PF in "master"');
  }
  if (args.VF !== undefined) {
    if (!/^\d+$/.test(args.VF)) throw new CniError(Code.InvalidEnvironment, `CNI_ARGS VF = ${showValue(args.VF)}: not a VF index`);
    return { master: fields.master, index: Number(args.VF), field: 'CNI_ARGS VF' };
  }
  return { master: fields.master, index: fields.vf, field: 'vf' };
}

/** The whole request for ADD: which VF, what to set on it. No device is looked at yet. */
export function loadRequest(inv: Invocation): SriovRequest {
  const fields = parseFields(inv);
  const args = parseCniArgs(inv.env.args, SRIOV_ARGS);
  const mac = chooseMac(inv, fields.mac, args);
  if (mac !== undefined && isGroupMac(mac)) throw invalid('mac', mac, 'a multicast or broadcast address cannot be a VF\'s own');
  const change: VfChange = { ...vlanChange(fields), ...rateChange(fields) };
  if (mac !== undefined) change.mac = mac;
  if (fields.spoofchk !== undefined) change.spoofchk = fields.spoofchk === 'on';
  if (fields.trust !== undefined) change.trust = fields.trust === 'on';
  if (fields.link_state !== undefined) change.linkState = fields.link_state;
  const pod = args.K8S_POD_NAMESPACE && args.K8S_POD_NAME ? `${args.K8S_POD_NAMESPACE}/${args.K8S_POD_NAME}` : undefined;
  return { choice: choiceOf(inv, fields, args), change, mac, pod };
}
