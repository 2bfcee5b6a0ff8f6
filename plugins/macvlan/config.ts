// The reference macvlan plugin's config, field for field, plus `source` mode as our extension.
import * as z from 'zod/mini';
import { parseWith } from '../../lib/cni/config.ts';
import { INTERFACE_NAME, parseCniArgs } from '../../lib/cni/env.ts';
import { Code, CniError, showValue } from '../../lib/cni/errors.ts';
import type { Invocation } from '../../lib/cni/skel.ts';
import { chooseMac, macString } from '../../lib/mac.ts';
import { defaultRouteInterface, findLink } from '../../lib/net/link.ts';

export const MODES = ['bridge', 'private', 'vepa', 'passthru', 'source'] as const;

export const MacvlanConfSchema = z.looseObject({
  master: z.optional(z.string().check(z.regex(INTERFACE_NAME, 'not an interface name (1-15 characters, no "/", ":" or white space)'))),
  mode: z.optional(z.union([z.enum(MODES), z.literal('')])),
  mtu: z.optional(z.int().check(z.minimum(0))),
  mac: z.optional(macString),
  linkInContainer: z.optional(z.boolean()),
  bcqueuelen: z.optional(z.int().check(z.minimum(0), z.maximum(0xffffffff))),
  /** Extension: the source MACs a `source`-mode macvlan accepts frames from. */
  sourceMacs: z.optional(z.array(macString)),
});
export type MacvlanFields = z.infer<typeof MacvlanConfSchema>;

export interface MacvlanConf {
  master: string;
  mode: (typeof MODES)[number];
  mtu?: number;
  mac?: string;
  linkInContainer: boolean;
  bcqueuelen?: number;
  sourceMacs: string[];
}

/** The fields DEL needs: no lookup of the master, which may be long gone (plugins #953). */
export function parseFields(inv: Invocation): MacvlanFields {
  return parseWith(MacvlanConfSchema, inv.raw);
}

/** The full config for ADD and CHECK: master resolved (and checked, when its MTU matters), MAC chosen. */
export function loadConf(inv: Invocation, options: { requireMaster: boolean }): MacvlanConf {
  const fields = parseFields(inv);
  const masterNetns = fields.linkInContainer ? inv.env.netns : undefined;
  const mode = fields.mode || 'bridge';
  if (mode === 'source' && (fields.sourceMacs ?? []).length === 0) {
    throw new CniError(Code.InvalidConfig, 'invalid network config: sourceMacs = missing: mode "source" needs the MACs it accepts frames from');
  }
  let master = fields.master ?? '';
  if (!master) {
    master = defaultRouteInterface(masterNetns) ?? '';
    if (!master) throw new CniError(Code.InvalidConfig, 'invalid network config: master = missing, and no default route interface found to use instead');
  }
  if (options.requireMaster || fields.mtu !== undefined) {
    const link = findLink(master, masterNetns);
    if (!link) throw new CniError(Code.InvalidConfig, `invalid network config: master = ${showValue(master)}: no such link${masterNetns ? ` in ${masterNetns}` : ''}`);
    if (fields.mtu !== undefined && fields.mtu > link.mtu) {
      throw new CniError(Code.InvalidConfig, `invalid network config: mtu = ${fields.mtu}: must be in [0, ${link.mtu}], the MTU of master ${showValue(master)}`);
    }
  }
  return {
    master,
    mode,
    mtu: fields.mtu || undefined,
    mac: chooseMac(inv, fields.mac, parseCniArgs(inv.env.args, ['MAC'])),
    linkInContainer: fields.linkInContainer ?? false,
    bcqueuelen: fields.bcqueuelen,
    sourceMacs: fields.sourceMacs ?? [],
  };
}
