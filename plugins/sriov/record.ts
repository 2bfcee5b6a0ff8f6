// The record of one attachment, in the shape sriov-cni writes (its NetConf with OrigVfState, Master,
// VFID, ContIFNames), so either plugin can tear down what the other set up. Our own fields sit under
// "underlay"; a record written by sriov-cni has none, and what it applied is read from its config.
import * as z from 'zod/mini';
import { VF_LINK_STATES, type VfChange, type VfSettings } from '../../lib/net/vf.ts';

/** Everything DEL needs to undo an ADD, whatever state the VF was left in. */
export interface Attachment {
  containerId: string;
  ifName: string;
  network: string;
  /** The pod's network namespace at ADD: the allocation marker names it while the pod holds the VF. */
  netns: string;
  vf: { pci: string; pfPci: string; pf: string; index: number };
  /** Bound to a userspace driver: PF settings only, no netdev. */
  dpdk: boolean;
  /** The name the netdev has in the pod until it is renamed to ifName (one no pod interface has). */
  temporaryName?: string;
  /** The PF-level settings ADD applies: DEL restores these (and the admin MAC, always). */
  change: VfChange;
  original: {
    settings: VfSettings;
    /** The VF netdev as the host had it (kernel driver only). */
    hostName: string;
    mac: string;
    mtu: number;
    up: boolean;
    altnames: string[];
  };
  rdma?: { device: string; exclusive: boolean };
  pod?: string;
  /** The user's config (no prevResult): what sriov-cni keeps, and what a later GC matches on. */
  config: Record<string, unknown>;
}

const LINK_STATE_NUMBERS = { auto: 0, enable: 1, disable: 2 } as const;

const OrigVfStateSchema = z.looseObject({
  HostIFName: z._default(z.string(), ''),
  SpoofChk: z.optional(z.boolean()),
  Trust: z.optional(z.boolean()),
  AdminMAC: z._default(z.string(), ''),
  EffectiveMAC: z._default(z.string(), ''),
  Vlan: z._default(z.number(), 0),
  VlanQoS: z._default(z.number(), 0),
  VlanProto: z._default(z.string(), '802.1q'),
  MinTxRate: z._default(z.number(), 0),
  MaxTxRate: z._default(z.number(), 0),
  LinkState: z._default(z.number(), 0),
  MTU: z._default(z.number(), 0),
});

const VfChangeSchema = z.object({
  mac: z.optional(z.string()),
  vlan: z.optional(z.number()),
  qos: z.optional(z.number()),
  proto: z.optional(z.enum(['802.1Q', '802.1ad'])),
  spoofchk: z.optional(z.boolean()),
  trust: z.optional(z.boolean()),
  linkState: z.optional(z.enum(VF_LINK_STATES)),
  minTxRate: z.optional(z.number()),
  maxTxRate: z.optional(z.number()),
});

export const CacheSchema = z.looseObject({
  name: z._default(z.string(), ''),
  deviceID: z.string(),
  Master: z.string(),
  VFID: z.number(),
  ContIFNames: z.optional(z.string()),
  OrigVfState: OrigVfStateSchema,
  underlay: z.optional(z.object({
    containerID: z.string(),
    ifName: z.string(),
    netns: z.string(),
    pfPci: z.string(),
    dpdk: z.boolean(),
    temporaryName: z.optional(z.string()),
    change: VfChangeSchema,
    up: z.boolean(),
    altnames: z.array(z.string()),
    rdma: z.optional(z.object({ device: z.string(), exclusive: z.boolean() })),
    pod: z.optional(z.string()),
  })),
});
export type Cache = z.infer<typeof CacheSchema>;

/** The attachment as sriov-cni would have written it, plus our fields under "underlay". */
export function encode(att: Attachment): string {
  const s = att.original.settings;
  const cache: Cache = {
    ...att.config,
    name: att.network,
    deviceID: att.vf.pci,
    Master: att.vf.pf,
    VFID: att.vf.index,
    ContIFNames: att.ifName,
    OrigVfState: {
      HostIFName: att.original.hostName,
      SpoofChk: s.spoofchk,
      Trust: s.trust,
      AdminMAC: s.mac,
      EffectiveMAC: att.original.mac,
      Vlan: s.vlan,
      VlanQoS: s.qos,
      VlanProto: s.proto.toLowerCase(),
      MinTxRate: s.minTxRate,
      MaxTxRate: s.maxTxRate,
      LinkState: LINK_STATE_NUMBERS[s.linkState ?? 'auto'],
      MTU: att.original.mtu,
    },
    underlay: {
      containerID: att.containerId,
      ifName: att.ifName,
      netns: att.netns,
      pfPci: att.vf.pfPci,
      dpdk: att.dpdk,
      temporaryName: att.temporaryName,
      change: att.change,
      up: att.original.up,
      altnames: att.original.altnames,
      rdma: att.rdma,
      pod: att.pod,
    },
  };
  return `${JSON.stringify(cache)}\n`;
}

/** sriov-cni keeps the config fields; what it applied is what they ask for. */
function changeFromConfig(cache: Cache): VfChange {
  const change: VfChange = {};
  const num = (key: string): number | undefined => (typeof cache[key] === 'number' ? cache[key] : undefined);
  const str = (key: string): string | undefined => (typeof cache[key] === 'string' ? cache[key] : undefined);
  const vlan = num('vlan');
  if (vlan !== undefined) Object.assign(change, { vlan, qos: num('vlanQoS') ?? 0, proto: str('vlanProto')?.toLowerCase() === '802.1ad' ? '802.1ad' : '802.1Q' });
  const mac = str('MAC') || str('mac');
  if (mac) change.mac = mac.toLowerCase();
  if (str('spoofchk')) change.spoofchk = str('spoofchk') === 'on';
  if (str('trust')) change.trust = str('trust') === 'on';
  const linkState = VF_LINK_STATES.find((state) => state === str('link_state'));
  if (linkState) change.linkState = linkState;
  if (num('min_tx_rate') !== undefined || num('max_tx_rate') !== undefined) Object.assign(change, { minTxRate: num('min_tx_rate') ?? 0, maxTxRate: num('max_tx_rate') ?? 0 });
  return change;
}

export function decode(cache: Cache, key: { containerId: string; ifName: string; netns: string }): Attachment {
  const o = cache.OrigVfState;
  const ours = cache.underlay;
  const linkState = (Object.keys(LINK_STATE_NUMBERS) as Array<keyof typeof LINK_STATE_NUMBERS>).find((k) => LINK_STATE_NUMBERS[k] === o.LinkState);
  const { underlay: _ours, OrigVfState: _orig, Master: _pf, VFID: _index, ContIFNames: _ifName, ...config } = cache;
  return {
    containerId: ours?.containerID ?? key.containerId,
    ifName: ours?.ifName ?? cache.ContIFNames ?? key.ifName,
    network: cache.name,
    netns: ours?.netns ?? key.netns,
    vf: { pci: cache.deviceID, pfPci: ours?.pfPci ?? '', pf: cache.Master, index: cache.VFID },
    dpdk: ours?.dpdk ?? o.HostIFName === '',
    temporaryName: ours?.temporaryName,
    change: ours?.change ?? changeFromConfig(cache),
    original: {
      settings: {
        mac: o.AdminMAC.toLowerCase(),
        vlan: o.Vlan,
        qos: o.VlanQoS,
        proto: o.VlanProto.toLowerCase() === '802.1ad' ? '802.1ad' : '802.1Q',
        spoofchk: o.SpoofChk,
        trust: o.Trust,
        linkState,
        minTxRate: o.MinTxRate,
        maxTxRate: o.MaxTxRate,
      },
      hostName: o.HostIFName,
      mac: o.EffectiveMAC.toLowerCase(),
      mtu: o.MTU,
      up: ours?.up ?? false,
      altnames: ours?.altnames ?? [],
    },
    rdma: ours?.rdma,
    pod: ours?.pod,
    config,
  };
}

