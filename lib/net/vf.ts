// A PF's VF table: what `ip -j link show PF` prints under vfinfo_list, and the `ip link set dev PF vf N
// ...` lines that change it. These are settings of the PF's embedded switch, kept by the PF driver
// whatever happens to the VF's netdev: the pod never sees them, and they outlive the pod.
import * as z from 'zod/mini';
import { Code, CniError } from '../cni/errors.ts';
import { run, parseIpJson, type IpCommand } from './ip.ts';
import { LinkSchema } from './schemas.ts';

export type VlanProtocol = '802.1Q' | '802.1ad';
export const VF_LINK_STATES = ['auto', 'enable', 'disable'] as const;
export type VfLinkState = (typeof VF_LINK_STATES)[number];

/** One VF's entry, as iproute2 6.1 prints it (keys it leaves out when zero or 802.1Q are optional). */
const VfInfoSchema = z.looseObject({
  vf: z.number(),
  address: z.string(),
  vlan_list: z.optional(z.array(z.looseObject({ vlan: z.optional(z.number()), qos: z.optional(z.number()), protocol: z.optional(z.string()) }))),
  vlan: z.optional(z.number()),
  qos: z.optional(z.number()),
  rate: z.optional(z.looseObject({ max_tx: z.number(), min_tx: z.number() })),
  spoofchk: z.optional(z.boolean()),
  link_state: z.optional(z.string()),
  trust: z.optional(z.boolean()),
});

export const PfLinkSchema = z.extend(LinkSchema, {
  altnames: z.optional(z.array(z.string())),
  vfinfo_list: z.optional(z.array(VfInfoSchema)),
});
export type PfLink = z.infer<typeof PfLinkSchema>;
const PfLinkListSchema = z.array(PfLinkSchema);

/** A VF's switch settings. spoofchk and trust are undefined for a driver that does not report them. */
export interface VfSettings {
  mac: string;
  vlan: number;
  qos: number;
  proto: VlanProtocol;
  spoofchk?: boolean;
  trust?: boolean;
  linkState?: VfLinkState;
  minTxRate: number;
  maxTxRate: number;
}

function settingsOf(entry: z.infer<typeof VfInfoSchema>): VfSettings {
  const tag = entry.vlan_list?.[0] ?? { vlan: entry.vlan, qos: entry.qos };
  const linkState = VF_LINK_STATES.find((state) => state === entry.link_state);
  return {
    mac: entry.address.toLowerCase(),
    vlan: tag.vlan ?? 0,
    qos: tag.qos ?? 0,
    proto: 'protocol' in tag && tag.protocol === '802.1ad' ? '802.1ad' : '802.1Q',
    spoofchk: entry.spoofchk,
    trust: entry.trust,
    linkState,
    minTxRate: entry.rate?.min_tx ?? 0,
    maxTxRate: entry.rate?.max_tx ?? 0,
  };
}

/** The VF table of `link` (a PF read with `ip -j link show`), by VF index. */
export function vfTable(link: PfLink): Map<number, VfSettings> {
  return new Map((link.vfinfo_list ?? []).map((entry) => [entry.vf, settingsOf(entry)]));
}

/** VF `index` of `link`'s table; an error when the PF does not report it. */
export function vfSettings(link: PfLink, index: number): VfSettings {
  const settings = vfTable(link).get(index);
  if (!settings) throw new CniError(Code.Internal, `PF ${link.ifname} reports no VF ${index} in its VF table (ip link show ${link.ifname})`);
  return settings;
}

/**
 * Reads links of our namespace in one spawn: the PF (with its VF table) first, then the others by
 * name. A name that does not exist fails the read.
 */
export function readPfAndLinks(pf: string, others: ReadonlyArray<string> = []): PfLink[] {
  const names = [pf, ...others];
  const input = names.map((name) => `link show dev ${name}\n`).join('');
  const args = ['link', 'show', 'dev', pf];
  const out = run(['ip', '-j', '-batch', '-'], { input }).trim().split('\n');
  return names.map((name, i) => {
    const link = parseIpJson(PfLinkListSchema, out[i] ?? '[]', args)[0];
    if (!link) throw new CniError(Code.Internal, `ip -j link show dev ${name} printed no link`);
    return link;
  });
}

/** The settings a plugin asks for: only what its config names (a driver may not support the rest). */
export type VfChange = Partial<Omit<VfSettings, 'qos' | 'proto'>> & { qos?: number; proto?: VlanProtocol };

const onOff = (value: boolean): string => (value ? 'on' : 'off');

/**
 * The `ip link set dev PF vf N ...` lines for `change`, one setting per line so a refusal names it:
 * VLAN (with QoS and protocol), MAC, spoof check, trust, rates (both at once), link state.
 */
export function vfCommands(pf: string, index: number, change: VfChange): IpCommand[] {
  const vf = ['link', 'set', 'dev', pf, 'vf', index];
  const lines: IpCommand[] = [];
  if (change.vlan !== undefined) lines.push([...vf, 'vlan', change.vlan, 'qos', change.qos ?? 0, 'proto', change.proto ?? '802.1Q']);
  if (change.mac !== undefined) lines.push([...vf, 'mac', change.mac]);
  if (change.spoofchk !== undefined) lines.push([...vf, 'spoofchk', onOff(change.spoofchk)]);
  if (change.trust !== undefined) lines.push([...vf, 'trust', onOff(change.trust)]);
  if (change.minTxRate !== undefined || change.maxTxRate !== undefined) {
    lines.push([...vf, 'min_tx_rate', change.minTxRate ?? 0, 'max_tx_rate', change.maxTxRate ?? 0]);
  }
  if (change.linkState !== undefined) lines.push([...vf, 'state', change.linkState]);
  return lines;
}

/** The settings of `wanted` that `actual` does not have: "vlan 0 (wanted 100)" with `word` = "wanted". */
export function vfDifferences(actual: VfSettings, wanted: VfChange, word = 'wanted'): string[] {
  const out: string[] = [];
  const full: VfChange = wanted.vlan === undefined ? wanted : { qos: 0, proto: '802.1Q', ...wanted };
  for (const key of ['vlan', 'qos', 'proto', 'mac', 'spoofchk', 'trust', 'minTxRate', 'maxTxRate', 'linkState'] as const) {
    const want = full[key];
    if (want !== undefined && actual[key] !== want) out.push(`${key} ${String(actual[key])} (${word} ${String(want)})`);
  }
  return out;
}
