// How a value from the config or the environment appears in an error message or a log line: secrets
// redacted, nothing a shell would expand or a terminal would obey, short, and still readable.
import * as z from 'zod/mini';
import { describe, expect, it } from 'vitest';
import { checkConfigSize, parseWith } from '../../lib/cni/config.ts';
import { showValue } from '../../lib/cni/errors.ts';
import { escaped } from '../../lib/log.ts';
import { thrown } from '../helpers/ipam-invocation.ts';
import { strictStderr } from '../helpers/fixture.ts';

strictStderr();

describe('showValue', () => {
  it('redacts every field whose name says secret, at any depth', () => {
    const shown = showValue({ etcd_password: 'p1', nested: [{ token: 't1', apiKey: 'k1', clientSecret: 's1' }] });
    expect(shown).toBe('{"etcd_password":"(not shown)","nested":[{"token":"(not shown)","apiKey":"(no...');
    expect(showValue({ auth: { user: 'u' }, name: 'visible' })).toBe('{"auth":"(not shown)","name":"visible"}');
  });

  it('redacts text that is key material whatever its field: PEM blocks and JSON web tokens', () => {
    expect(showValue({ data: '-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE' })).toBe('{"data":"(not shown)"}');
    expect(showValue('eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.sig')).toBe('"(not shown)"');
  });

  it('shows nothing of a value whose own field is secret', () => {
    expect(showValue('hunter2', 'etcd_password')).toBe('(not shown)');
  });

  it('escapes what a shell expands inside double quotes and what a terminal obeys, and stays JSON', () => {
    const hostile = '$(reboot) `id` !! \u001b[2J \u202e \u0085';
    const shown = showValue(hostile);
    for (const char of ['$', '`', '!', '\u001b', '\u202e', '\u0085']) expect(shown).not.toContain(char);
    expect(JSON.parse(shown)).toBe(hostile);
  });

  it('cuts a long value to a short prefix, and stops walking a huge or deep one once it is full', () => {
    expect(showValue('x'.repeat(50_000))).toMatch(/^"x{70,}\.\.\.$/);
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(showValue(deep)).toBe('[[[[[[[[[[[[[[[[[...]]]]]]]]]]]]]]]]]');
    expect(showValue(Array.from({ length: 1_000_000 }, () => 1))).toMatch(/^\[1(,1){37},\.\.\.$/);
  });
});

describe('parseWith', () => {
  it('does not show the value of a secret-named field that fails its schema', () => {
    const err = thrown(() => parseWith(z.object({ auth: z.object({ token: z.string() }) }), { auth: { token: 12345 } }, 'kubernetes'));
    expect(err.message).toMatch(/^invalid network config: kubernetes\.auth\.token = \(not shown\): /);
    expect(err.message).not.toContain('12345');
  });

  it('quotes a field name that is not a plain name: keys are config text too', () => {
    const err = thrown(() => parseWith(z.record(z.string(), z.string()), { 'a;$(id)\n': 1 }));
    expect(err.message).toMatch(/^invalid network config: \["a;\\u0024\(id\)\\n"\] = 1: /);
  });
});

describe('checkConfigSize', () => {
  it('refuses an array of more than 10,000 items, naming where it is', () => {
    const err = thrown(() => checkConfigSize({ ipam: { exclude: Array.from({ length: 10_001 }, () => 'x') } }));
    expect(err.code).toBe(7);
    expect(err.message).toBe('invalid network config: ipam.exclude has 10001 items; at most 10000 are accepted');
  });

  it('refuses nesting deeper than 64 levels without using the stack for it', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 500_000; i++) deep = { a: deep };
    const err = thrown(() => checkConfigSize({ args: deep }));
    expect(err.code).toBe(7);
    expect(err.message).toMatch(/^invalid network config: args(\.a)+\.*\.\.\. nests deeper than 64 levels$/);
  });

  it('lets a large real config through', () => {
    const attachments = Array.from({ length: 1000 }, (_, i) => ({ containerID: `c${i}`, ifname: 'net1' }));
    expect(() => checkConfigSize({ cniVersion: '1.1.0', name: 'n', 'cni.dev/valid-attachments': attachments })).not.toThrow();
  });
});

describe('escaped log messages', () => {
  it('escape shell metacharacters and controls in the values, not in the text around them', () => {
    const podref = 'ns/web;reboot $(id) `id` > /etc/x\n2026-01-01T00:00:00Z [error] forged';
    expect(escaped`pool (a) of ${podref} is full`).toBe('pool (a) of ns/web\\;reboot \\x24\\(id\\) \\x60id\\x60 \\> /etc/x\\x0a2026-01-01T00:00:00Z \\[error\\] forged is full');
  });

  it('show a non-text value as showValue does', () => {
    expect(escaped`mtu ${{ mtu: 9000, password: 'p' }}`).toBe('mtu {"mtu":9000,"password":"(not shown)"}');
  });
});
