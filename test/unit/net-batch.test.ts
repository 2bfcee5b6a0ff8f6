// What goes into `ip -batch`: one plain word per token, or a refusal naming the token.
import { describe, expect, it } from 'vitest';
import { assertBatchSafe, batchText } from '../../lib/net/ip.ts';
import { routeCommand } from '../../lib/net/link.ts';

describe('batch tokens', () => {
  it.each(['a b', 'eth0\nlink del lo', 'a"b', "a'b", 'a\\b', 'net#1', '', '\t'])('refuses %j', (token) => {
    expect(() => assertBatchSafe('link', 'del', token)).toThrow(/refusing to pass/);
  });
  it('joins plain tokens into lines', () => {
    expect(batchText([['link', 'set', 'dev', 'n;1', 'up'], ['addr', 'add', '10.0.0.2/24', 'dev', 'n;1']])).toBe(
      'link set dev n;1 up\naddr add 10.0.0.2/24 dev n;1\n',
    );
  });
});

describe('routeCommand', () => {
  const ips = [{ address: '10.0.0.2/24', gateway: '10.0.0.1' }, { address: 'fd00::2/64', gateway: 'fd00::1' }];
  it('defaults the gateway to the first of the route\'s family', () => {
    expect(routeCommand({ dst: '0.0.0.0/0' }, 'net1', ips)).toEqual(['route', 'add', '0.0.0.0/0', 'via', '10.0.0.1', 'dev', 'net1']);
    expect(routeCommand({ dst: '::/0' }, 'net1', ips)).toEqual(['route', 'add', '::/0', 'via', 'fd00::1', 'dev', 'net1']);
  });
  it('keeps an explicit gateway and the 1.1 route attributes', () => {
    expect(routeCommand({ dst: '192.0.2.0/24', gw: '10.0.0.9', priority: 5, table: 100, mtu: 1400 }, 'net1', ips)).toEqual(
      ['route', 'add', '192.0.2.0/24', 'via', '10.0.0.9', 'dev', 'net1', 'metric', 5, 'table', 100, 'mtu', 1400],
    );
  });
});
