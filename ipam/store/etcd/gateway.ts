// The etcd v3 JSON gateway over lib/http: POST a request to one endpoint after another until one
// answers, authenticated when the config names a user. An endpoint that cannot be reached, or that
// answers "no leader", "timed out" and the like, is skipped for the next within the same call, and
// all are asked again after a pause while the deadline allows; when it passes, the call throws
// StoreUnavailable naming each endpoint of the last round and why. The endpoint that last
// answered is asked first next time, and each store starts at a random one (unless told) so nodes spread
// their load.
import { setTimeout as sleep } from 'node:timers/promises';
import { Code } from '../../../lib/cni/errors.ts';
import { HttpClient, HttpTlsError, HttpUnreachable } from '../../../lib/http.ts';
import { StoreUnavailable } from '../types.ts';
import { EtcdError, judgeReply, tlsFailure, type Verdict } from './errors.ts';
import type { GatewaySettings } from './settings.ts';
import { AuthReplySchema } from './wire.ts';

/**
 * With endpoints left to try, one attempt gets its share of the time left, within these bounds: a
 * member that hangs (stopped, cut off) must not eat the whole deadline, and a slow one must still have
 * time to answer. The cap matters when a leader dies: a follower holds the proposals it had forwarded
 * to it until etcd's own request timeout (about 7 s), while another member answers once a new leader
 * is elected (about a second). A healthy etcd answers in milliseconds.
 */
const MIN_ATTEMPT_MS = 1_000;
const MAX_ATTEMPT_MS = 2_000;
/** The first pause before going around the endpoints again; it doubles up to eight times this. */
const ROUND_PAUSE_MS = 100;

type Settled = Exclude<Verdict, { kind: 'reauthenticate' } | { kind: 'no-auth' }>;
type Login = { kind: 'ok'; token: string | undefined } | Exclude<Settled, { kind: 'ok' }>;

export class EtcdGateway {
  readonly endpoints: ReadonlyArray<string>;
  /** HTTP requests sent, authentication included: the benchmark prints them per ADD and DEL. */
  requests = 0;
  private readonly settings: GatewaySettings;
  private readonly client: HttpClient;
  private first: number;
  private token: string | undefined;
  /** The server said authentication is off: credentials in the config are not needed. */
  private authOff = false;
  private login: Promise<Login> | undefined;

  constructor(settings: GatewaySettings, startAt?: number) {
    this.settings = settings;
    this.endpoints = settings.endpoints;
    this.client = new HttpClient(settings.tls);
    const count = settings.endpoints.length;
    this.first = startAt === undefined ? Math.floor(Math.random() * count) : ((Math.trunc(startAt) % count) + count) % count;
  }

  /**
   * POSTs `body` to `path` and returns the parsed answer. When every endpoint failed in a way that may
   * pass and time is left, goes around them again after a pause: a cluster electing a new leader
   * answers "leader changed" at once and serves again a second or so later.
   */
  async post(path: string, body: unknown, deadline: number): Promise<unknown> {
    const payload = JSON.stringify(body);
    const count = this.endpoints.length;
    let lastRound: string[] = [];
    for (let round = 0; ; round++) {
      const failures: string[] = [];
      for (let k = 0; k < count; k++) {
        const now = Date.now();
        if (now >= deadline) break;
        const index = (this.first + k) % count;
        const endpoint = this.endpoints[index]!;
        const verdict = await this.attempt(endpoint, path, payload, this.attemptDeadline(now, deadline, count - k));
        if (verdict.kind === 'ok') {
          this.first = index;
          return verdict.body;
        }
        if (verdict.kind === 'final') throw verdict.error;
        failures.push(verdict.why);
      }
      if (failures.length > 0) lastRound = failures;
      const pause = ROUND_PAUSE_MS * Math.min(2 ** round, 8) * (0.5 + Math.random() / 2);
      if (failures.length === 0 || Date.now() + pause >= deadline) {
        const tried = lastRound.length ? lastRound.join('; ') : `the deadline passed before ${this.endpoints.join(', ')} could be asked`;
        throw new StoreUnavailable(`etcd is unavailable: ${tried}${round > 0 ? ` (after ${round + 1} rounds of its endpoints)` : ''}`);
      }
      await sleep(pause);
    }
  }

  /**
   * One attempt gets its share of the time left among the `left` endpoints still to ask this round. A
   * lone endpoint gets all of it: there is no other to turn to, and a loaded etcd still answers.
   */
  private attemptDeadline(now: number, deadline: number, left: number): number {
    if (this.endpoints.length === 1) return deadline;
    const share = Math.min(Math.max((deadline - now) / left, MIN_ATTEMPT_MS), MAX_ATTEMPT_MS);
    return Math.min(deadline, now + share);
  }

  /** One endpoint: authenticates first when needed, and once more if the token went stale. */
  private async attempt(endpoint: string, path: string, payload: string, deadline: number): Promise<Settled> {
    for (let round = 0; ; round++) {
      let token: string | undefined;
      if (this.settings.username !== undefined && !this.authOff) {
        const login = await this.authenticate(endpoint, deadline);
        if (login.kind !== 'ok') return login;
        token = login.token;
      }
      const verdict = await this.send(endpoint, path, payload, deadline, token);
      if (verdict.kind === 'reauthenticate') {
        // A member forgets simple tokens when it restarts; JWT tokens expire.
        if (this.token === token) this.token = undefined;
        if (round === 0 && token !== undefined) continue;
        return { kind: 'final', error: new EtcdError(Code.InvalidConfig, endpoint, `refused ${token === undefined ? 'a request without a token' : 'a fresh authentication token'} for ${path}`) };
      }
      if (verdict.kind === 'no-auth') return { kind: 'final', error: new EtcdError(Code.IoFailure, endpoint, `answered ${path} with "authentication is not enabled"`) };
      return verdict;
    }
  }

  private authenticate(endpoint: string, deadline: number): Promise<Login> {
    if (this.token !== undefined) return Promise.resolve({ kind: 'ok', token: this.token });
    this.login ??= this.logIn(endpoint, deadline).finally(() => {
      this.login = undefined;
    });
    return this.login;
  }

  private async logIn(endpoint: string, deadline: number): Promise<Login> {
    const path = '/v3/auth/authenticate';
    const verdict = await this.send(endpoint, path, JSON.stringify({ name: this.settings.username, password: this.settings.password }), deadline, undefined);
    switch (verdict.kind) {
      case 'ok': {
        const reply = AuthReplySchema.safeParse(verdict.body);
        if (!reply.success) return { kind: 'final', error: new EtcdError(Code.IoFailure, endpoint, `answered ${path} without a token`) };
        this.token = reply.data.token;
        return { kind: 'ok', token: this.token };
      }
      case 'no-auth':
        this.authOff = true;
        return { kind: 'ok', token: undefined };
      case 'reauthenticate':
        return { kind: 'final', error: new EtcdError(Code.IoFailure, endpoint, `answered ${path} with a token error`) };
      default:
        return verdict;
    }
  }

  private async send(endpoint: string, path: string, payload: string, deadline: number, token: string | undefined): Promise<Verdict> {
    this.requests++;
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    // etcd reads the token from this header as it is: no "Bearer".
    if (token !== undefined) headers.authorization = token;
    try {
      const res = await this.client.request({ method: 'POST', url: `${endpoint}${path}`, headers, body: payload, deadline });
      return judgeReply(res, endpoint, path, this.settings);
    } catch (err) {
      if (err instanceof HttpTlsError) return { kind: 'final', error: tlsFailure(err.message, endpoint, this.settings) };
      if (err instanceof HttpUnreachable) return { kind: 'elsewhere', why: err.message };
      return { kind: 'final', error: new EtcdError(Code.IoFailure, endpoint, `request for ${path} failed: ${err instanceof Error ? err.message : String(err)}`) };
    }
  }

  close(): void {
    this.client.close();
  }
}
