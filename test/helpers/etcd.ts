// A real etcd for tests (Debian's etcd-server, 3.4): one member or a 3-member cluster on free loopback
// ports, each with a data dir under one temp dir /tmp/underlay-etcd-*. Options: TLS for clients (a CA,
// a server and client certificates made with openssl), client-cert-auth, and auth with users.
// stop()/kill()/start() a member keep its data dir; destroy() kills everything and removes the dir. If
// the test process dies first, its members die with it (setpriv --pdeathsig), an 'exit' hook kills
// what is left and removes the dirs, and the next harness start sweeps dirs whose owner is gone.
//
// What a client certificate's CN does when auth is on (etcd 3.4.23, checked by
// test/integration/etcd-auth.test.ts):
//   - Over gRPC (etcdctl) with --client-cert-auth, etcd takes the certificate's CN as the user name when
//     the request carries no user and password: a CN that names a user gets that user's rights.
//   - The JSON gateway refuses every request, /v3/auth/authenticate included, from a client whose
//     certificate has a non-empty CN: HTTP 400, text/plain "CommonName of client sending a request
//     against gateway will be ignored and not used as expected". So a gateway client needs a
//     certificate with NO CN (these certificates have the subject "O=underlay-test") and authenticates
//     with a user name and password, sending the token it gets. With auth off the CN does not matter.
//   - The server certificate's CN is never taken as a user for gateway requests: even with the CN
//     "root", a request without a token gets "user name is empty".
//   - The member's gateway reaches its own gRPC server over TLS presenting the SERVER certificate, so
//     with --client-cert-auth that certificate needs extendedKeyUsage clientAuth too: without it every
//     gateway request fails (HTTP 503, "write: broken pipe") while /health still answers true.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { HttpClient } from '../../lib/http.ts';

const run = promisify(execFile);
const TMP = '/tmp';
const DIR_PREFIX = 'underlay-etcd-';
const START_TIMEOUT_MS = 30_000;

export interface Credentials {
  name: string;
  password: string;
}

export interface CertPair {
  certFile: string;
  keyFile: string;
}

export interface EtcdTls {
  caFile: string;
  /** Signed by the CA, for clients; CN empty. */
  client: CertPair;
  /** A CA that signed nothing the server trusts or presents: for "untrusted CA" cases. */
  foreignCaFile: string;
  /** A client certificate signed by the foreign CA. */
  foreignClient: CertPair;
  /** Another client certificate signed by the test CA, with this CN ("" for none). */
  clientWithCn(cn: string): Promise<CertPair>;
}

export interface EtcdOptions {
  /** 1 (default) or 3. */
  members?: number;
  /** Clients speak https (peers stay plain http on loopback). */
  tls?: boolean;
  /** Clients must present a certificate the CA signed (implies tls). */
  clientCertAuth?: boolean;
  /** Auth on: a root user and `user`, whose role may read and write keys under `keyPrefix`. */
  auth?: boolean;
  /** The prefix the user's role grants readwrite on; default "/underlay/". */
  keyPrefix?: string;
  /** "ec" (P-256, the default) or "rsa" (2048). */
  keyType?: 'ec' | 'rsa';
  /** The server certificate's CN; default "underlay-test-etcd-server", a name no user has. */
  serverCn?: string;
  /**
   * Give the server certificate extendedKeyUsage clientAuth (the default), which the member's own
   * gateway needs with client-cert-auth; false makes the broken setup users meet.
   */
  serverCertClientAuth?: boolean;
  /** Extra flags for every member, e.g. ["--cipher-suites", "..."]. */
  extraFlags?: string[];
}

interface Member {
  name: string;
  dir: string;
  clientUrl: string;
  peerUrl: string;
  child?: ChildProcess | undefined;
  exited?: Promise<void>;
}

const live = new Set<EtcdCluster>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const cluster of live) cluster.destroySync();
  });
}

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** Removes what a test process killed before its 'exit' hook left behind. */
function sweepOrphans(): void {
  for (const entry of readdirSync(TMP)) {
    if (!entry.startsWith(DIR_PREFIX)) continue;
    const dir = join(TMP, entry);
    let owner: number;
    try {
      owner = Number(readFileSync(join(dir, 'owner.pid'), 'utf8'));
    } catch {
      continue;
    }
    if (Number.isInteger(owner) && owner > 0 && !isAlive(owner)) rmSync(dir, { recursive: true, force: true });
  }
}

/** Free loopback ports, all held at once so none is handed out twice. */
async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () => new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve(server));
    })),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  await run('openssl', args, { cwd });
}

/** A CA and leaf certificates signed by it, made with openssl in `dir`. */
class CertMaker {
  private serial = 1;
  private readonly dir: string;
  private readonly keyType: 'ec' | 'rsa';

  constructor(dir: string, keyType: 'ec' | 'rsa') {
    this.dir = dir;
    this.keyType = keyType;
  }

  private keyArgs(): string[] {
    return this.keyType === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'] : ['-newkey', 'rsa:2048'];
  }

  async ca(name: string): Promise<string> {
    await openssl(['req', '-x509', ...this.keyArgs(), '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`], this.dir);
    return join(this.dir, `${name}.crt`);
  }

  /** `cn` "" gives a subject with no CN at all. */
  async leaf(name: string, ca: string, cn: string, usage: 'server' | 'server-only' | 'client'): Promise<CertPair> {
    const subject = cn === '' ? '/O=underlay-test' : `/O=underlay-test/CN=${cn}`;
    await openssl(['req', ...this.keyArgs(), '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject], this.dir);
    // The server certificate also authenticates the member's gateway to its own gRPC server (see the top).
    const ext = usage === 'client'
      ? 'extendedKeyUsage=clientAuth\n'
      : `subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=${usage === 'server' ? 'serverAuth,clientAuth' : 'serverAuth'}\n`;
    writeFileSync(join(this.dir, `${name}.ext`), ext);
    await openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-set_serial', String(this.serial++), '-days', '2', '-out', `${name}.crt`, '-extfile', `${name}.ext`], this.dir);
    return { certFile: join(this.dir, `${name}.crt`), keyFile: join(this.dir, `${name}.key`) };
  }
}

export class EtcdCluster {
  readonly dir: string;
  readonly tls: EtcdTls | undefined;
  readonly root: Credentials | undefined;
  /** The user with readwrite on keyPrefix (auth only). */
  readonly user: Credentials | undefined;
  readonly keyPrefix: string;
  private readonly members: Member[];
  private readonly options: EtcdOptions;
  private serverCert: CertPair | undefined;

  private constructor(dir: string, members: Member[], options: EtcdOptions, tls: EtcdTls | undefined, serverCert: CertPair | undefined) {
    this.dir = dir;
    this.members = members;
    this.options = options;
    this.tls = tls;
    this.serverCert = serverCert;
    this.keyPrefix = options.keyPrefix ?? '/underlay/';
    if (options.auth) {
      this.root = { name: 'root', password: `root-pw-${Math.random().toString(36).slice(2)}` };
      this.user = { name: 'underlay', password: `user-pw-${Math.random().toString(36).slice(2)}` };
    }
  }

  /** Client URLs, one per member, in member order. */
  get endpoints(): string[] {
    return this.members.map((m) => m.clientUrl);
  }

  static async start(options: EtcdOptions = {}): Promise<EtcdCluster> {
    sweepOrphans();
    installExitHook();
    // A port found free may be taken by another test process before etcd binds it: try other ports.
    for (let attempt = 1; ; attempt++) {
      try {
        return await EtcdCluster.startOnce(options);
      } catch (err) {
        if (attempt >= 3 || !/address already in use/.test(String(err))) throw err;
      }
    }
  }

  private static async startOnce(options: EtcdOptions): Promise<EtcdCluster> {
    const dir = mkdtempSync(join(TMP, DIR_PREFIX));
    writeFileSync(join(dir, 'owner.pid'), String(process.pid));
    const tlsOn = options.tls === true || options.clientCertAuth === true;
    let cluster: EtcdCluster | undefined;
    try {
      let tls: EtcdTls | undefined;
      let serverCert: CertPair | undefined;
      if (tlsOn) {
        const certDir = join(dir, 'pki');
        mkdirSync(certDir, { mode: 0o700 });
        const maker = new CertMaker(certDir, options.keyType ?? 'ec');
        const caFile = await maker.ca('ca');
        const foreignCaFile = await maker.ca('foreign-ca');
        serverCert = await maker.leaf('server', 'ca', options.serverCn ?? 'underlay-test-etcd-server', options.serverCertClientAuth === false ? 'server-only' : 'server');
        const client = await maker.leaf('client', 'ca', '', 'client');
        const foreignClient = await maker.leaf('foreign-client', 'foreign-ca', '', 'client');
        let n = 0;
        tls = { caFile, client, foreignCaFile, foreignClient, clientWithCn: (cn) => maker.leaf(`client-${n++}`, 'ca', cn, 'client') };
      }
      const count = options.members ?? 1;
      const members: Member[] = [];
      const ports = await freePorts(count * 2);
      for (let i = 0; i < count; i++) {
        const scheme = tlsOn ? 'https' : 'http';
        members.push({ name: `m${i}`, dir: join(dir, `m${i}`), clientUrl: `${scheme}://127.0.0.1:${ports[2 * i]}`, peerUrl: `http://127.0.0.1:${ports[2 * i + 1]}` });
      }
      cluster = new EtcdCluster(dir, members, options, tls, serverCert);
      live.add(cluster);
      await Promise.all(members.map((_, i) => cluster!.start(i)));
      if (options.auth) await cluster.enableAuth();
      return cluster;
    } catch (err) {
      if (cluster) await cluster.destroy();
      else rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  private flags(m: Member): string[] {
    const initialCluster = this.members.map((x) => `${x.name}=${x.peerUrl}`).join(',');
    const flags = [
      '--name', m.name, '--data-dir', join(m.dir, 'data'),
      '--listen-client-urls', m.clientUrl, '--advertise-client-urls', m.clientUrl,
      '--listen-peer-urls', m.peerUrl, '--initial-advertise-peer-urls', m.peerUrl,
      '--initial-cluster', initialCluster, '--initial-cluster-state', 'new', '--initial-cluster-token', this.dir,
      '--logger', 'zap', '--log-level', 'warn',
    ];
    if (this.serverCert) flags.push('--cert-file', this.serverCert.certFile, '--key-file', this.serverCert.keyFile);
    if (this.tls) flags.push('--trusted-ca-file', this.tls.caFile);
    if (this.options.clientCertAuth) flags.push('--client-cert-auth');
    return [...flags, ...(this.options.extraFlags ?? [])];
  }

  /** Starts member `i` (again, on its data dir) and waits until it answers /health. */
  async start(i: number): Promise<void> {
    const m = this.member(i);
    if (m.child) throw new Error(`etcd member ${m.name} is already running`);
    mkdirSync(m.dir, { recursive: true, mode: 0o700 });
    const log = openSync(join(m.dir, 'etcd.log'), 'a');
    // --pdeathsig: the member dies with the test process, even one killed by SIGKILL.
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', 'etcd', ...this.flags(m)], { stdio: ['ignore', log, log] });
    closeSync(log);
    m.child = child;
    m.exited = new Promise((resolve) => child.once('exit', () => {
      if (m.child === child) m.child = undefined;
      resolve();
    }));
    await this.waitHealthy(i);
  }

  /** SIGTERM, and waits for the member to exit. */
  async stop(i: number): Promise<void> {
    await this.signal(i, 'SIGTERM');
  }

  /** kill -9, and waits for the member to be gone. */
  async kill(i: number): Promise<void> {
    await this.signal(i, 'SIGKILL');
  }

  /** SIGSTOP: the member keeps its sockets (connections succeed) but answers nothing. */
  pause(i: number): void {
    this.member(i).child?.kill('SIGSTOP');
  }

  resume(i: number): void {
    this.member(i).child?.kill('SIGCONT');
  }

  /** The index of the member that is the raft leader now, as the running members report it. */
  async leader(): Promise<number> {
    const status = JSON.parse(await this.etcdctl(['endpoint', 'status', '-w', 'json'])) as Array<{ Endpoint: string; Status: { header: { member_id: number | string }; leader: number | string } }>;
    const leaderId = String(status[0]?.Status.leader);
    const entry = status.find((s) => String(s.Status.header.member_id) === leaderId);
    const index = this.members.findIndex((m) => m.clientUrl === entry?.Endpoint);
    if (index < 0) throw new Error(`no leader among ${JSON.stringify(status)}`);
    return index;
  }

  private async signal(i: number, signal: NodeJS.Signals): Promise<void> {
    const m = this.member(i);
    if (!m.child) return;
    m.child.kill(signal);
    // A paused member handles SIGTERM only once it runs again.
    m.child.kill('SIGCONT');
    await m.exited;
  }

  private member(i: number): Member {
    const m = this.members[i];
    if (!m) throw new Error(`no etcd member ${i}`);
    return m;
  }

  isRunning(i: number): boolean {
    return this.member(i).child !== undefined;
  }

  logOf(i: number): string {
    const path = join(this.member(i).dir, 'etcd.log');
    return existsSync(path) ? readFileSync(path, 'utf8') : '';
  }

  /** Waits until member `i` (or every running member) reports itself healthy. */
  async waitHealthy(i?: number, timeoutMs = START_TIMEOUT_MS): Promise<void> {
    const which = i === undefined ? this.members.map((_, k) => k).filter((k) => this.isRunning(k)) : [i];
    const client = new HttpClient(this.tls ? { ca: readFileSync(this.tls.caFile), cert: readFileSync(this.tls.client.certFile), key: readFileSync(this.tls.client.keyFile) } : {});
    const until = Date.now() + timeoutMs;
    try {
      for (const k of which) {
        const m = this.member(k);
        for (;;) {
          if (!m.child) throw new Error(`etcd member ${m.name} exited while starting:\n${this.logOf(k).slice(-2000)}`);
          const ok = await client.request({ method: 'GET', url: `${m.clientUrl}/health`, deadline: Math.min(until, Date.now() + 1000) })
            .then((res) => res.status === 200 && (JSON.parse(res.body) as { health?: string }).health === 'true', () => false);
          if (ok) break;
          if (Date.now() > until) throw new Error(`etcd member ${m.name} not healthy after ${timeoutMs} ms:\n${this.logOf(k).slice(-2000)}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    } finally {
      client.close();
    }
  }

  /** etcdctl against the running members, as root when auth is on (unless `as` says otherwise). */
  async etcdctl(args: string[], as: Credentials | null | undefined = this.root): Promise<string> {
    const running = this.members.filter((m) => m.child).map((m) => m.clientUrl);
    const flags = ['--endpoints', running.join(','), '--dial-timeout', '5s', '--command-timeout', '10s'];
    if (this.tls) flags.push('--cacert', this.tls.caFile, '--cert', this.tls.client.certFile, '--key', this.tls.client.keyFile);
    if (as) flags.push('--user', `${as.name}:${as.password}`);
    const { stdout } = await run('etcdctl', [...flags, ...args], { env: { ...process.env, ETCDCTL_API: '3' } });
    return stdout;
  }

  private async enableAuth(): Promise<void> {
    const root = this.root!;
    const user = this.user!;
    await this.etcdctl(['user', 'add', root.name, '--new-user-password', root.password], null);
    await this.etcdctl(['role', 'add', 'root'], null);
    await this.etcdctl(['user', 'grant-role', root.name, 'root'], null);
    await this.etcdctl(['role', 'add', 'underlay-rw'], null);
    await this.etcdctl(['role', 'grant-permission', 'underlay-rw', 'readwrite', this.keyPrefix, '--prefix'], null);
    await this.etcdctl(['user', 'add', user.name, '--new-user-password', user.password], null);
    await this.etcdctl(['user', 'grant-role', user.name, 'underlay-rw'], null);
    await this.etcdctl(['auth', 'enable'], null);
  }

  async destroy(): Promise<void> {
    await Promise.all(this.members.map((_, i) => this.kill(i)));
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }

  /** For the 'exit' hook, where nothing asynchronous runs any more. */
  destroySync(): void {
    for (const m of this.members) m.child?.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }
}

export const startEtcd = (options?: EtcdOptions): Promise<EtcdCluster> => EtcdCluster.start(options);
