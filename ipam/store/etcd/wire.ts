// The etcd v3 JSON gateway's wire form, as etcd 3.4 and 3.5 serve it: protobuf JSON, so keys and values
// are base64, int64 fields are decimal strings, and a field at its zero value (0, false, empty) is left
// out: a failed txn has no "succeeded", an absent key no "kvs".
import * as z from 'zod/mini';
import '../../../lib/schema.ts';

const int64 = () => z.optional(z.string().check(z.regex(/^-?\d+$/)));

export const HeaderSchema = z.object({ revision: int64() });

export const KeyValueSchema = z.object({
  key: z.string(),
  value: z.optional(z.string()),
  create_revision: int64(),
  mod_revision: int64(),
});
export type KeyValue = z.infer<typeof KeyValueSchema>;

export const RangeReplySchema = z.object({
  header: z.optional(HeaderSchema),
  kvs: z.optional(z.array(KeyValueSchema)),
  more: z.optional(z.boolean()),
});

export const TxnReplySchema = z.object({
  header: HeaderSchema,
  succeeded: z.optional(z.boolean()),
});

export const AuthReplySchema = z.object({ token: z.string().check(z.minLength(1)) });

/** What the gateway sends with a non-200 status: the gRPC status it got from the member. */
export const ErrorReplySchema = z.object({
  error: z.optional(z.string()),
  message: z.optional(z.string()),
  code: z.optional(z.number()),
});

export const toBase64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');
export const fromBase64 = (text: string | undefined): string => Buffer.from(text ?? '', 'base64').toString('utf8');

/** The smallest key greater than every key that starts with `prefix` (base64): a range's range_end. */
export function prefixEnd(prefix: string): string {
  const bytes = Buffer.from(prefix, 'utf8');
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const end = bytes.subarray(0, i + 1);
      end[i] = bytes[i]! + 1;
      return end.toString('base64');
    }
  }
  // Every byte is 0xff (or the prefix is empty): "\0" means "to the end of the key space".
  return Buffer.from([0]).toString('base64');
}

/** A compare that holds while `key` is absent (expected undefined), or at mod_revision `expected`. */
export function compareFor(key: string, expected: string | undefined): Record<string, string> {
  return expected === undefined
    ? { key, target: 'CREATE', result: 'EQUAL', create_revision: '0' }
    : { key, target: 'MOD', result: 'EQUAL', mod_revision: expected };
}
