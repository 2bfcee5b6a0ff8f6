// The parts of iproute2's JSON output we read. Loose objects: iproute2 adds keys between releases.
import * as z from 'zod/mini';

export const AddrInfoSchema = z.looseObject({
  family: z.string(),
  local: z.string(),
  prefixlen: z.number(),
  scope: z.optional(z.string()),
});

export const LinkSchema = z.looseObject({
  ifindex: z.number(),
  ifname: z.string(),
  flags: z._default(z.array(z.string()), []),
  mtu: z.number(),
  operstate: z.optional(z.string()),
  address: z.optional(z.string()),
  link: z.optional(z.nullable(z.string())),
  master: z.optional(z.string()),
  linkinfo: z.optional(
    z.looseObject({
      info_kind: z.optional(z.string()),
      info_data: z.optional(z.looseObject({ mode: z.optional(z.string()) })),
    }),
  ),
  addr_info: z.optional(z.array(AddrInfoSchema)),
});
export type Link = z.infer<typeof LinkSchema>;
export const LinkListSchema = z.array(LinkSchema);

export const RouteEntrySchema = z.looseObject({
  dst: z.string(),
  gateway: z.optional(z.string()),
  dev: z.optional(z.string()),
  table: z.optional(z.string()),
  metric: z.optional(z.number()),
});
export type RouteEntry = z.infer<typeof RouteEntrySchema>;
export const RouteListSchema = z.array(RouteEntrySchema);
