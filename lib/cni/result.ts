// Results in every spec version, and the conversions between them. Inside Underlay a result is always
// the 1.1.0 shape (`Result`); it is converted once, on the way in (prevResult, a delegated IPAM's
// answer) and on the way out (always in the config's cniVersion).
import * as z from 'zod/mini';
import { Code, CniError } from './errors.ts';
import { atLeast } from './version.ts';

// Addresses and routes end up as iproute2 arguments: a result (from a foreign IPAM, or routes a user
// wrote into an IPAM config) is checked here, so a bad value fails early, naming its field.
// Checked without node:net, whose loading alone costs milliseconds on every ADD.
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** 4, 6, or 0 for a string that is not an IP address. IPv6 is left to the WHATWG URL parser. */
export function ipFamily(value: string): 0 | 4 | 6 {
  if (IPV4.test(value)) return 4;
  if (!value.includes(':') || /[^0-9a-fA-F:.]/.test(value)) return 0;
  return URL.canParse(`http://[${value}]/`) ? 6 : 0;
}
const isCidr = (value: string): boolean => {
  const [address, prefix, extra] = value.split('/');
  const family = ipFamily(address ?? '');
  return extra === undefined && family !== 0 && /^\d{1,3}$/.test(prefix ?? '') && Number(prefix) <= (family === 4 ? 32 : 128);
};
const ipString = z.string().check(z.refine((value) => ipFamily(value) !== 0, 'not an IP address'));
const cidrString = z.string().check(z.refine(isCidr, 'not an address/prefix (CIDR)'));

export const DnsSchema = z.object({
  nameservers: z.optional(z.array(z.string())),
  domain: z.optional(z.string()),
  search: z.optional(z.array(z.string())),
  options: z.optional(z.array(z.string())),
});
export type Dns = z.infer<typeof DnsSchema>;

export const RouteSchema = z.object({
  dst: cidrString,
  gw: z.optional(ipString),
  mtu: z.optional(z.int()),
  advmss: z.optional(z.int()),
  priority: z.optional(z.int()),
  table: z.optional(z.int()),
  scope: z.optional(z.int()),
});
export type Route = z.infer<typeof RouteSchema>;

/**
 * The result schemas, built on first use: an ADD that neither reads a prevResult nor execs its IPAM
 * never needs them, and building them costs every call that loads this module.
 */
function resultSchemas() {
  const InterfaceSchema = z.object({
    name: z.string(),
    mac: z.optional(z.string()),
    mtu: z.optional(z.int()),
    sandbox: z.optional(z.string()),
    socketPath: z.optional(z.string()),
    pciID: z.optional(z.string()),
  });
  const IpConfigSchema = z.object({
    address: cidrString,
    gateway: z.optional(ipString),
    interface: z.optional(z.int().check(z.nonnegative())),
  });
  const ResultSchema = z.object({
    cniVersion: z.optional(z.string()),
    interfaces: z.optional(z.array(InterfaceSchema)),
    ips: z.optional(z.array(IpConfigSchema)),
    routes: z.optional(z.array(RouteSchema)),
    dns: z.optional(DnsSchema),
  });
  const Result04Schema = z.extend(ResultSchema, {
    ips: z.optional(z.array(z.extend(IpConfigSchema, { version: z.optional(z.enum(['4', '6'])) }))),
  });
  const Ip02Schema = z.object({
    ip: cidrString,
    gateway: z.optional(ipString),
    routes: z.optional(z.array(z.object({ dst: cidrString, gw: z.optional(ipString) }))),
  });
  const Result02Schema = z.object({
    cniVersion: z.optional(z.string()),
    ip4: z.optional(Ip02Schema),
    ip6: z.optional(Ip02Schema),
    dns: z.optional(DnsSchema),
  });
  return { InterfaceSchema, IpConfigSchema, ResultSchema, Result04Schema, Result02Schema };
}

type Schemas = ReturnType<typeof resultSchemas>;
let built: Schemas | undefined;
const schemas = (): Schemas => (built ??= resultSchemas());

export type Interface = z.infer<Schemas['InterfaceSchema']>;
export type IpConfig = z.infer<Schemas['IpConfigSchema']>;
export type Result = z.infer<Schemas['ResultSchema']>;

export const familyOf = (address: string): 4 | 6 => (address.includes(':') ? 6 : 4);

function decodeFailure(what: string, err: z.core.$ZodError): CniError {
  const issue = err.issues[0];
  const where = issue?.path.length ? issue.path.join('.') : '(top level)';
  return new CniError(Code.DecodingFailure, `cannot decode ${what}: ${where}: ${issue?.message ?? 'invalid'}`);
}

/** Reads a result written in `version` (a prevResult, or a delegated plugin's stdout) into the 1.1 shape. */
export function parseResult(raw: unknown, version: string, what = 'result'): Result {
  if (!atLeast(version, '0.3.0')) {
    const parsed = schemas().Result02Schema.safeParse(raw);
    if (!parsed.success) throw decodeFailure(what, parsed.error);
    return upFrom02(parsed.data);
  }
  const parsed = schemas().Result04Schema.safeParse(raw);
  if (!parsed.success) throw decodeFailure(what, parsed.error);
  const { ips, ...rest } = parsed.data;
  const result: Result = { ...rest };
  if (ips) result.ips = ips.map(({ version: _family, ...ip }) => ip);
  return result;
}

function upFrom02(old: z.infer<Schemas['Result02Schema']>): Result {
  const result: Result = { ips: [], routes: [] };
  for (const ip of [old.ip4, old.ip6]) {
    if (!ip) continue;
    result.ips!.push(ip.gateway ? { address: ip.ip, gateway: ip.gateway } : { address: ip.ip });
    for (const r of ip.routes ?? []) result.routes!.push(r);
  }
  if (old.dns) result.dns = old.dns;
  return result;
}

const isEmptyDns = (dns: Dns | undefined): boolean =>
  !dns || ((dns.nameservers ?? []).length === 0 && !dns.domain && (dns.search ?? []).length === 0 && (dns.options ?? []).length === 0);

/** Key order as the Go library prints it, so our output reads like the reference plugins'. */
function orderIp(ip: IpConfig, version?: string): Record<string, unknown> {
  return {
    ...(version !== undefined && { version }),
    ...(ip.interface !== undefined && { interface: ip.interface }),
    address: ip.address,
    ...(ip.gateway !== undefined && { gateway: ip.gateway }),
  };
}

/**
 * The wire form of `result` in `version`. `dns` is always present, as {} when empty, matching the
 * reference plugins Debian ships (containernetworking-plugins 1.1), which runtimes are used to.
 */
export function encodeResult(result: Result, version: string): Record<string, unknown> {
  if (atLeast(version, '1.0.0')) {
    const out: Record<string, unknown> = { cniVersion: version };
    // 1.1 added interfaces' mtu, socketPath and pciID, and routes' mtu, advmss, priority, table, scope.
    const v11 = atLeast(version, '1.1.0');
    if (result.interfaces?.length) out.interfaces = v11 ? result.interfaces : result.interfaces.map(({ mtu: _m, socketPath: _s, pciID: _p, ...iface }) => iface);
    if (result.ips?.length) out.ips = result.ips.map((ip) => orderIp(ip));
    if (result.routes?.length) out.routes = v11 ? result.routes : result.routes.map(({ dst, gw }) => (gw ? { dst, gw } : { dst }));
    out.dns = isEmptyDns(result.dns) ? {} : result.dns;
    return out;
  }
  if (atLeast(version, '0.3.0')) {
    const out: Record<string, unknown> = { cniVersion: version };
    if (result.interfaces?.length) {
      out.interfaces = result.interfaces.map(({ name, mac, sandbox }) => ({
        name,
        ...(mac !== undefined && { mac }),
        ...(sandbox !== undefined && { sandbox }),
      }));
    }
    if (result.ips?.length) {
      out.ips = result.ips.map((ip) => orderIp(ip, String(familyOf(ip.address))));
    }
    if (result.routes?.length) out.routes = result.routes.map(({ dst, gw }) => (gw ? { dst, gw } : { dst }));
    out.dns = result.dns ?? {};
    return out;
  }
  return encode02(result, version);
}

function encode02(result: Result, version: string): Record<string, unknown> {
  const out: Record<string, unknown> = { cniVersion: version };
  for (const family of [4, 6] as const) {
    const ip = result.ips?.find((candidate) => familyOf(candidate.address) === family);
    if (!ip) continue;
    const routes = (result.routes ?? [])
      .filter((r) => familyOf(r.dst) === family)
      .map(({ dst, gw }) => (gw ? { dst, gw } : { dst }));
    out[`ip${family}`] = {
      ip: ip.address,
      ...(ip.gateway && { gateway: ip.gateway }),
      ...(routes.length > 0 && { routes }),
    };
  }
  if (!out.ip4 && !out.ip6) {
    throw new CniError(Code.IncompatibleVersion, `cannot convert result to cniVersion ${version}: no valid IP addresses`);
  }
  out.dns = result.dns ?? {};
  return out;
}
