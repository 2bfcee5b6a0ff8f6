// The VF table as iproute2 6.1 prints it, the commands that change it, what DEL restores, and the
// record on disk: ours, and one sriov-cni wrote (a node moving from sriov-cni to Underlay).
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseIpJson } from '../../lib/net/ip.ts';
import { PfLinkSchema, vfCommands, vfDifferences, vfSettings, vfTable } from '../../lib/net/vf.ts';
import * as z from 'zod/mini';
import { restoreChange } from '../../plugins/sriov/restore.ts';
import { holdsVf, loadAttachment, markerPath, saveAttachment, type Attachment } from '../../plugins/sriov/state.ts';

// `ip -j -d link show ens1f0` of a PF with two VFs: one untagged, one with 802.1ad VLAN and rates.
const PF_JSON = JSON.stringify([{
  ifindex: 4, ifname: 'ens1f0', flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'], mtu: 9000, address: 'b8:ce:f6:00:00:01',
  vfinfo_list: [
    { vf: 0, link_type: 'ether', address: '00:00:00:00:00:00', broadcast: 'ff:ff:ff:ff:ff:ff', vlan_list: [{}], rate: { max_tx: 0, min_tx: 0 }, spoofchk: true, link_state: 'auto', trust: false, query_rss_en: false },
    { vf: 1, link_type: 'ether', address: '02:AA:00:00:00:01', broadcast: 'ff:ff:ff:ff:ff:ff', vlan_list: [{ vlan: 100, qos: 3, protocol: '802.1ad' }], tx_rate: 1000, rate: { max_tx: 1000, min_tx: 100 }, spoofchk: false, link_state: 'enable', trust: true, query_rss_en: false },
  ],
  altnames: ['enp59s0f0'],
}]);
const pf = parseIpJson(z.array(PfLinkSchema), PF_JSON, ['link', 'show'])[0]!;

describe('the VF table', () => {
  it('reads each VF\'s settings, with iproute2\'s omissions (vlan 0, qos 0, 802.1Q) filled in', () => {
    expect(vfSettings(pf, 0)).toEqual({ mac: '00:00:00:00:00:00', vlan: 0, qos: 0, proto: '802.1Q', spoofchk: true, trust: false, linkState: 'auto', minTxRate: 0, maxTxRate: 0 });
    expect(vfSettings(pf, 1)).toEqual({ mac: '02:aa:00:00:00:01', vlan: 100, qos: 3, proto: '802.1ad', spoofchk: false, trust: true, linkState: 'enable', minTxRate: 100, maxTxRate: 1000 });
    expect([...vfTable(pf).keys()]).toEqual([0, 1]);
    expect(() => vfSettings(pf, 5)).toThrow(/reports no VF 5/);
  });

  it('one line per setting, VLAN with QoS and protocol, both rates at once', () => {
    expect(vfCommands('ens1f0', 2, { vlan: 7, mac: '02:00:00:00:00:07', spoofchk: true, trust: false, maxTxRate: 50, linkState: 'disable' })).toEqual([
      ['link', 'set', 'dev', 'ens1f0', 'vf', 2, 'vlan', 7, 'qos', 0, 'proto', '802.1Q'],
      ['link', 'set', 'dev', 'ens1f0', 'vf', 2, 'mac', '02:00:00:00:00:07'],
      ['link', 'set', 'dev', 'ens1f0', 'vf', 2, 'spoofchk', 'on'],
      ['link', 'set', 'dev', 'ens1f0', 'vf', 2, 'trust', 'off'],
      ['link', 'set', 'dev', 'ens1f0', 'vf', 2, 'min_tx_rate', 0, 'max_tx_rate', 50],
      ['link', 'set', 'dev', 'ens1f0', 'vf', 2, 'state', 'disable'],
    ]);
    expect(vfCommands('ens1f0', 2, {})).toEqual([]);
  });

  it('names what differs from what was asked', () => {
    expect(vfDifferences(vfSettings(pf, 1), { vlan: 100, trust: true })).toEqual(['qos 3 (wanted 0)', 'proto 802.1ad (wanted 802.1Q)']);
    expect(vfDifferences(vfSettings(pf, 1), { vlan: 100, qos: 3, proto: '802.1ad', mac: '02:aa:00:00:00:01' })).toEqual([]);
  });
});

const state = mkdtempSync(join(tmpdir(), 'underlay-sriov-state-'));
beforeAll(() => void (process.env.UNDERLAY_SRIOV_STATE_DIR = state));
afterAll(() => {
  delete process.env.UNDERLAY_SRIOV_STATE_DIR;
  rmSync(state, { recursive: true, force: true });
});

const attachment: Attachment = {
  containerId: 'c1', ifName: 'net1', network: 'fast', netns: '/proc/self/ns/net',
  vf: { pci: '0000:af:06.1', pfPci: '0000:af:00.0', pf: 'ens1f0', index: 1 }, dpdk: false, temporaryName: 'ul0000abcd',
  change: { vlan: 100, qos: 3, proto: '802.1ad', trust: true, mac: '02:aa:00:00:00:01' },
  original: { settings: vfSettings(pf, 0), hostName: 'ens1f0v1', mac: '9a:00:00:00:00:01', mtu: 1500, up: true, altnames: ['enp59s0f0v1'] },
  pod: 'prod/db-0', config: { cniVersion: '1.1.0', name: 'fast', type: 'sriov', deviceID: '0000:af:06.1', vlan: 100 },
};

describe('what DEL restores', () => {
  it('the original of each setting ADD changed, and the admin MAC whatever it changed', () => {
    expect(restoreChange(attachment)).toEqual({ mac: '00:00:00:00:00:00', vlan: 0, qos: 0, proto: '802.1Q', trust: false });
    expect(restoreChange({ ...attachment, change: {} })).toEqual({ mac: '00:00:00:00:00:00' });
  });
});

describe('the record on disk', () => {
  it('round-trips, private, with the marker naming the pod', () => {
    saveAttachment(attachment);
    expect(loadAttachment('c1', 'net1', '')).toEqual(attachment);
    expect(statSync(join(state, 'c1-net1')).mode & 0o777).toBe(0o600);
    expect(statSync(join(state, 'pci')).mode & 0o777).toBe(0o700);
    expect(holdsVf(attachment)).toBe(true);
    expect(holdsVf({ ...attachment, netns: '/run/netns/another' })).toBe(false);
    rmSync(markerPath(attachment.vf.pci));
  });

  it('reads a record sriov-cni wrote: what it applied comes from its config fields', () => {
    writeFileSync(join(state, 'old-net2'), JSON.stringify({
      cniVersion: '1.0.0', name: 'legacy', type: 'sriov', deviceID: '0000:af:06.2', vlan: 20, vlanQoS: 1, spoofchk: 'off', max_tx_rate: 300, MAC: '02:00:00:00:02:02',
      OrigVfState: { HostIFName: 'ens1f0v2', SpoofChk: true, Trust: false, AdminMAC: '00:00:00:00:00:00', EffectiveMAC: '9a:00:00:00:00:02', Vlan: 0, VlanQoS: 0, VlanProto: '802.1q', MinTxRate: 0, MaxTxRate: 0, LinkState: 0, MTU: 1500 },
      Master: 'ens1f0', VFID: 2, ContIFNames: 'net2',
    }), { mode: 0o600 });
    const att = loadAttachment('old', 'net2', '/run/netns/legacy-pod')!;
    expect(att).toMatchObject({
      ifName: 'net2', netns: '/run/netns/legacy-pod', dpdk: false, temporaryName: undefined,
      vf: { pci: '0000:af:06.2', pf: 'ens1f0', index: 2 },
      change: { vlan: 20, qos: 1, proto: '802.1Q', spoofchk: false, minTxRate: 0, maxTxRate: 300, mac: '02:00:00:00:02:02' },
      original: { hostName: 'ens1f0v2', mac: '9a:00:00:00:00:02', mtu: 1500, settings: { vlan: 0, spoofchk: true, linkState: 'auto' } },
    });
    expect(restoreChange(att)).toEqual({ mac: '00:00:00:00:00:00', vlan: 0, qos: 0, proto: '802.1Q', spoofchk: true, minTxRate: 0, maxTxRate: 0 });
  });
});
