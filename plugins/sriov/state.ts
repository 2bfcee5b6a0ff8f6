// What the sriov plugin keeps on disk, in sriov-cni's places and shapes so either plugin can tear down
// what the other set up (UNDERLAY_SRIOV_STATE_DIR moves it all, for tests):
//   <dir>/<containerID>-<ifName>     the attachment: config, the VF's original state (OrigVfState)
//   <dir>/pci/<pciAddr>              allocation marker: the netns path of the pod holding the VF
//   <dir>/pci/vf_lock/<pciAddr>.lock the per-VF lock
// ADD writes the attachment, then the marker, before it changes anything: whatever kills it, DEL finds
// what to restore. Our own fields sit under "underlay"; a cache written by sriov-cni has none.
import { closeSync, constants, openSync, readdirSync, renameSync, rmSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import * as z from 'zod/mini';
import { Code, CniError } from '../../lib/cni/errors.ts';
import { ensurePrivateDir, ioError, isTempOf, readFileIfExists, tempPathOf, writeAll } from '../../lib/fs.ts';
import { lockFile, tryLockFile, type FileLock } from '../../lib/lock.ts';
import { log } from '../../lib/log.ts';
import { VF_LINK_STATES, type VfChange, type VfSettings } from '../../lib/net/vf.ts';

export const stateDir = (): string => process.env.UNDERLAY_SRIOV_STATE_DIR || '/var/lib/cni/sriov';
const pciDir = (): string => join(stateDir(), 'pci');
const lockDir = (): string => join(pciDir(), 'vf_lock');
export const markerPath = (pci: string): string => join(pciDir(), pci);
const cachePath = (containerId: string, ifName: string): string => join(stateDir(), `${containerId}-${ifName}`);

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

const CacheSchema = z.looseObject({
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
type Cache = z.infer<typeof CacheSchema>;

/** The attachment as sriov-cni would have written it, plus our fields under "underlay". */
function encode(att: Attachment): string {
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

function decode(cache: Cache, key: { containerId: string; ifName: string; netns: string }): Attachment {
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

function parseCache(text: string, path: string, key: { containerId: string; ifName: string; netns: string }): Attachment | undefined {
  try {
    const parsed = CacheSchema.safeParse(JSON.parse(text));
    if (parsed.success) return decode(parsed.data, key);
    log.error(`ignoring ${path}: not an sriov attachment record (${parsed.error.issues[0]?.message})`);
  } catch (err) {
    log.error(`ignoring ${path}: ${(err as Error).message}`);
  }
  return undefined;
}

/** The attachment of (containerId, ifName); `netns` stands in for a record that does not say. */
export function loadAttachment(containerId: string, ifName: string, netns: string): Attachment | undefined {
  const path = cachePath(containerId, ifName);
  const text = readFileIfExists(path);
  return text === undefined ? undefined : parseCache(text, path, { containerId, ifName, netns });
}

/** Every attachment on record (GC, the doctor, and the owners of a VF whose pod died). */
export function allAttachments(): Attachment[] {
  let names: string[];
  try {
    names = readdirSync(stateDir(), { withFileTypes: true }).filter((e) => e.isFile() && !e.name.includes('.tmp-')).map((e) => e.name);
  } catch {
    return [];
  }
  return names.flatMap((name) => {
    const path = join(stateDir(), name);
    const text = readFileIfExists(path);
    const att = text === undefined ? undefined : parseCache(text, path, { containerId: name, ifName: '', netns: '' });
    return att ? [att] : [];
  });
}

/** The netns path named by the VF's allocation marker, or undefined when it has none. */
export const markerOf = (pci: string): string | undefined => readFileIfExists(markerPath(pci))?.trim();

/**
 * Replaces `path` whole (temp file, rename): a killed writer leaves the old file or the new one. Not
 * fsync'ed: these files describe VFs and netns that do not outlive a reboot either, and after one a
 * lost or empty record makes DEL do less, never harm (a durable write costs ~12 ms on a busy disk).
 */
function replaceFile(path: string, data: string): void {
  const temp = tempPathOf(path);
  try {
    const fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      writeAll(fd, Buffer.from(data));
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
  } catch (err) {
    try {
      unlinkSync(temp);
    } catch {
      // Never created.
    }
    throw ioError('write', path, err);
  }
}

/** Records the attachment, then marks its VF as held by its pod: before anything is changed. */
export function saveAttachment(att: Attachment): void {
  ensurePrivateDir(stateDir());
  ensurePrivateDir(pciDir());
  replaceFile(cachePath(att.containerId, att.ifName), encode(att));
  replaceFile(markerPath(att.vf.pci), att.netns);
}

/** True when the VF's marker names this attachment's pod: only then is the VF this attachment's to restore. */
export const holdsVf = (att: Attachment): boolean => markerOf(att.vf.pci) === att.netns;

/**
 * Removes the temp files a writer of `path` killed mid-write left. Only called where no writer of
 * `path` can be running: a record's while its attachment is deleted (the runtime never runs two calls
 * for one attachment at once), a marker's under its VF's lock.
 */
function dropTempsOf(path: string): void {
  let names: string[];
  try {
    names = readdirSync(dirname(path));
  } catch {
    return;
  }
  for (const name of names) if (isTempOf(name, basename(path))) rmSync(join(dirname(path), name), { force: true });
}

/** What an ADD of (containerId, ifName) killed while writing its record left (DEL with no record). */
export const dropRecordTemps = (containerId: string, ifName: string): void => dropTempsOf(cachePath(containerId, ifName));

/** What a writer of the VF's marker killed mid-write left; under the VF's lock. */
export const dropMarkerTemps = (pci: string): void => dropTempsOf(markerPath(pci));

/** Drops the marker (if it is this attachment's) and the record, and what killed writers of either left. */
export function forget(att: Attachment): void {
  try {
    if (holdsVf(att)) rmSync(markerPath(att.vf.pci), { force: true });
    dropMarkerTemps(att.vf.pci);
    rmSync(cachePath(att.containerId, att.ifName), { force: true });
    dropRecordTemps(att.containerId, att.ifName);
  } catch (err) {
    throw new CniError(Code.IoFailure, `cannot remove the record of ${att.containerId}/${att.ifName}: ${(err as Error).message}`);
  }
}

const LOCK_WAIT_MS = 60_000;

function lockPath(pci: string): string {
  ensurePrivateDir(stateDir());
  ensurePrivateDir(pciDir());
  ensurePrivateDir(lockDir());
  return join(lockDir(), `${pci}.lock`);
}

/** The per-VF lock, held from the first look at a VF to the last change; waits up to 60 s for it. */
export const lockVf = (pci: string): Promise<FileLock> => lockFile(lockPath(pci), Date.now() + LOCK_WAIT_MS);

/** The per-VF lock if nobody holds it now. */
export const tryLockVf = (pci: string): FileLock | undefined => tryLockFile(lockPath(pci));
