import { describe, expect, it } from 'vitest';
import { encodeResult, ipFamily, parseResult, type Result } from '../../lib/cni/result.ts';
import { SUPPORTED_VERSIONS } from '../../lib/cni/version.ts';
import { strictStderr } from '../helpers/fixture.ts';

strictStderr();

const dualStack: Result = {
  interfaces: [{ name: 'net1', mac: '0a:58:0a:00:00:05', sandbox: '/run/netns/pod', mtu: 1500, pciID: '0000:03:02.3' }],
  ips: [
    { address: '10.1.0.5/16', gateway: '10.1.0.1', interface: 0 },
    { address: '10.1.0.6/16', interface: 0 },
    { address: 'fd00::5/64', gateway: 'fd00::1', interface: 0 },
  ],
  routes: [{ dst: '0.0.0.0/0', gw: '10.1.0.1', priority: 100 }, { dst: '::/0' }],
  dns: { nameservers: ['10.1.0.10'], search: ['svc.local'] },
};

describe('encodeResult', () => {
  it('1.1.0 keeps the 1.1 fields and no ips[].version', () => {
    const out = encodeResult(dualStack, '1.1.0') as { interfaces: Array<Record<string, unknown>>; ips: Array<Record<string, unknown>>; routes: Array<Record<string, unknown>> };
    expect(out.interfaces[0]).toMatchObject({ mtu: 1500, pciID: '0000:03:02.3' });
    expect(out.ips.every((ip) => !('version' in ip))).toBe(true);
    expect(out.routes[0]).toEqual({ dst: '0.0.0.0/0', gw: '10.1.0.1', priority: 100 });
  });

  for (const version of ['0.3.0', '0.3.1', '0.4.0']) {
    it(`${version} adds ips[].version and drops interface mtu/pciID and route extras`, () => {
      const out = encodeResult(dualStack, version) as { cniVersion: string; interfaces: Array<Record<string, unknown>>; ips: Array<Record<string, unknown>>; routes: unknown[] };
      expect(out.cniVersion).toBe(version);
      expect(out.interfaces[0]).toEqual({ name: 'net1', mac: '0a:58:0a:00:00:05', sandbox: '/run/netns/pod' });
      expect(out.ips.map((ip) => ip.version)).toEqual(['4', '4', '6']);
      expect(Object.keys(out.ips[0]!)).toEqual(['version', 'interface', 'address', 'gateway']);
      expect(out.routes).toEqual([{ dst: '0.0.0.0/0', gw: '10.1.0.1' }, { dst: '::/0' }]);
    });
  }

  for (const version of ['0.1.0', '0.2.0']) {
    it(`${version} keeps only the first IP of each family and splits routes by family`, () => {
      expect(encodeResult(dualStack, version)).toEqual({
        cniVersion: version,
        ip4: { ip: '10.1.0.5/16', gateway: '10.1.0.1', routes: [{ dst: '0.0.0.0/0', gw: '10.1.0.1' }] },
        ip6: { ip: 'fd00::5/64', gateway: 'fd00::1', routes: [{ dst: '::/0' }] },
        dns: { nameservers: ['10.1.0.10'], search: ['svc.local'] },
      });
    });
    it(`${version} fails without any IP`, () => {
      expect(() => encodeResult({ interfaces: dualStack.interfaces }, version)).toThrow(/no valid IP addresses/);
    });
  }

  it('an IPv6-only result converts to 0.2.0 with ip6 alone', () => {
    const out = encodeResult({ ips: [{ address: 'fd00::9/64' }] }, '0.2.0');
    expect(out).toEqual({ cniVersion: '0.2.0', ip6: { ip: 'fd00::9/64' }, dns: {} });
  });
});

describe('conversion between every pair of versions', () => {
  for (const from of SUPPORTED_VERSIONS) {
    for (const to of SUPPORTED_VERSIONS) {
      it(`${from} -> ${to} keeps the first address of each family, gateways and routes`, () => {
        const wire = encodeResult(dualStack, from);
        const back = parseResult(JSON.parse(JSON.stringify(wire)), from);
        const again = parseResult(encodeResult(back, to), to);
        const firstOf = (r: Result, family: string) => r.ips?.find((ip) => ip.address.includes(family === '6' ? ':' : '.'));
        for (const family of ['4', '6']) {
          expect(firstOf(again, family)?.address).toBe(firstOf(dualStack, family)?.address);
          expect(firstOf(again, family)?.gateway).toBe(firstOf(dualStack, family)?.gateway);
        }
        expect(again.routes?.map((r) => r.dst)).toEqual(['0.0.0.0/0', '::/0']);
        expect(again.dns?.nameservers).toEqual(['10.1.0.10']);
      });
    }
  }
});

describe('parseResult', () => {
  it('rejects a result whose ips is not a list, naming the field', () => {
    expect(() => parseResult({ ips: 'x' }, '1.0.0', 'prevResult')).toThrow(/prevResult: ips/);
  });
  it('reads 0.2.0 ip4/ip6 into ips and flattens routes', () => {
    expect(parseResult({ ip4: { ip: '10.0.0.2/24', routes: [{ dst: '0.0.0.0/0', gw: '10.0.0.1' }] } }, '0.2.0')).toEqual({
      ips: [{ address: '10.0.0.2/24' }],
      routes: [{ dst: '0.0.0.0/0', gw: '10.0.0.1' }],
    });
  });
});

describe('ipFamily', () => {
  it.each([
    ['10.0.0.1', 4], ['255.255.255.255', 4], ['fd00::1', 6], ['::', 6], ['2001:db8::10.0.0.1', 6],
    ['256.0.0.1', 0], ['10.0.0', 0], ['01.2.3.4', 0], ['fd00:::1', 0], ['fd00::g', 0], ['table', 0], ['', 0], ['1.2.3.4 ', 0],
  ])('%s is family %s', (value, family) => expect(ipFamily(value)).toBe(family));
});
