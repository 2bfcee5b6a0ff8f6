// sriov's config: what ADD asks of the VF, and the refusals that name field and value.
import { describe, expect, it } from 'vitest';
import { loadRequest } from '../../plugins/sriov/config.ts';
import { invocation, thrown } from '../helpers/ipam-invocation.ts';

const VF = '0000:af:06.0';
const request = (fields: Record<string, unknown>, args = '') => loadRequest(invocation({ ipam: {}, args, extra: { type: 'sriov', ...fields } }));

describe('what ADD asks of the VF', () => {
  it('only the settings the config names, VLAN with its defaults', () => {
    expect(request({ deviceID: VF })).toEqual({ choice: { deviceID: VF }, change: {}, mac: undefined, pod: undefined });
    expect(request({ deviceID: VF.toUpperCase(), vlan: 5 }).change).toEqual({ vlan: 5, qos: 0, proto: '802.1Q' });
    expect(request({ deviceID: VF, vlan: 5, vlanQoS: 2, vlanProto: '802.1AD' }).change).toEqual({ vlan: 5, qos: 2, proto: '802.1ad' });
    expect(request({ deviceID: VF, max_tx_rate: 100 }).change).toEqual({ minTxRate: 0, maxTxRate: 100 });
    expect(request({ deviceID: VF, spoofchk: 'off', trust: 'on', link_state: 'disable' }).change).toEqual({ spoofchk: false, trust: true, linkState: 'disable' });
  });

  it('the MAC is the admin MAC too, lower-cased; runtimeConfig wins over CNI_ARGS over config', () => {
    expect(request({ deviceID: VF, mac: '02:AA:00:00:00:01' })).toMatchObject({ mac: '02:aa:00:00:00:01', change: { mac: '02:aa:00:00:00:01' } });
    expect(request({ deviceID: VF, mac: '02:00:00:00:00:01' }, 'MAC=02:00:00:00:00:02').mac).toBe('02:00:00:00:00:02');
    expect(request({ deviceID: VF, mac: '02:00:00:00:00:01', runtimeConfig: { mac: '02:00:00:00:00:03' } }, 'MAC=02:00:00:00:00:02').mac).toBe('02:00:00:00:00:03');
  });

  it('the VF: deviceID, else runtimeConfig.deviceID, else master with VF=N, vf, or any free one', () => {
    expect(request({ runtimeConfig: { deviceID: VF } }).choice).toEqual({ deviceID: VF });
    expect(request({ deviceID: VF, master: 'ens1' }).choice).toEqual({ deviceID: VF });
    expect(request({ master: 'ens1' }).choice).toEqual({ master: 'ens1', index: undefined, field: 'vf' });
    expect(request({ master: 'ens1', vf: 3 }).choice).toEqual({ master: 'ens1', index: 3, field: 'vf' });
    expect(request({ master: 'ens1', vf: 3 }, 'VF=1').choice).toEqual({ master: 'ens1', index: 1, field: 'CNI_ARGS VF' });
  });

  it('the pod from CNI_ARGS, for the operator', () => {
    expect(request({ deviceID: VF }, 'K8S_POD_NAMESPACE=prod;K8S_POD_NAME=db-0').pod).toBe('prod/db-0');
  });
});

describe('refusals name the field and the value', () => {
  const cases: Array<[Record<string, unknown>, RegExp, string?]> = [
    [{}, /deviceID = missing: the VF's PCI address is required/],
    [{ deviceID: '0000:af:06' }, /deviceID = "0000:af:06": not a PCI address/],
    [{ runtimeConfig: { deviceID: 'x' } }, /runtimeConfig\.deviceID = "x": not a PCI address/],
    [{ deviceID: VF, vlan: -1 }, /vlan = -1: Too small/],
    [{ deviceID: VF, vlan: 4095 }, /vlan = 4095: Too big/],
    [{ deviceID: VF, vlan: 1.5 }, /vlan = 1\.5/],
    [{ deviceID: VF, vlanQoS: 1 }, /vlanQoS = 1: needs a vlan/],
    [{ deviceID: VF, vlan: 0, vlanQoS: 1 }, /vlanQoS = 1: needs a non-zero vlan \(vlan = 0\)/],
    [{ deviceID: VF, vlanProto: '802.1q' }, /vlanProto = "802\.1q": needs a non-zero vlan \(vlan = missing\)/],
    [{ deviceID: VF, vlan: 0, vlanProto: '802.1ad' }, /vlanProto = "802\.1ad": needs a non-zero vlan \(vlan = 0\)/],
    [{ deviceID: VF, link_state: 'down' }, /link_state = "down"/],
    [{ deviceID: VF, trust: true }, /trust = true/],
    [{ deviceID: VF, min_tx_rate: 10, max_tx_rate: 5 }, /min_tx_rate = 10: must not exceed max_tx_rate \(5\)/],
    [{ deviceID: VF, mac: 'ff:ff:ff:ff:ff:ff' }, /mac = "ff:ff:ff:ff:ff:ff": a multicast or broadcast address/],
    [{ deviceID: VF }, /CNI_ARGS MAC = "02:00"/, 'MAC=02:00'],
    [{ master: 'ens1' }, /CNI_ARGS VF = "one": not a VF index/, 'VF=one'],
    [{ master: 'a b' }, /master = "a b": not an interface name/],
  ];
  for (const [fields, message, args] of cases) {
    it(JSON.stringify(fields) + (args ? ` with ${args}` : ''), () => {
      const err = thrown(() => request(fields, args));
      expect(err.code).toBeOneOf([4, 7]);
      expect(err.message).toMatch(message);
    });
  }
  it('min_tx_rate above a max_tx_rate of 0 (no limit) is fine', () => {
    expect(request({ deviceID: VF, min_tx_rate: 10, max_tx_rate: 0 }).change).toEqual({ minTxRate: 10, maxTxRate: 0 });
  });
});
