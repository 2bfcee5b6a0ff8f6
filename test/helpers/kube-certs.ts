// A throw-away PKI for the simulated API server, made with openssl in a temp dir: a CA, a server
// certificate for 127.0.0.1/localhost, and client certificates on demand whose subject says who the
// client is, as kube-apiserver reads it (CN = user name, each O = a group).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface KeyPair {
  certPath: string;
  keyPath: string;
  cert: string;
  key: string;
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

const read = (paths: { certPath: string; keyPath: string }): KeyPair => ({ ...paths, cert: readFileSync(paths.certPath, 'utf8'), key: readFileSync(paths.keyPath, 'utf8') });

export class TestPki {
  readonly dir: string;
  readonly ca: KeyPair;
  readonly server: KeyPair;
  private serial = 1;

  constructor(dir = mkdtempSync(join(tmpdir(), 'underlay-kube-pki-'))) {
    this.dir = dir;
    const ca = { certPath: join(dir, 'ca.crt'), keyPath: join(dir, 'ca.key') };
    openssl(['req', '-x509', ...EC, '-keyout', ca.keyPath, '-out', ca.certPath, '-days', '2', '-subj', '/CN=underlay-test-ca',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    this.ca = read(ca);
    this.server = this.issue('server', '/CN=kube-apiserver', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth');
  }

  /** A client certificate signed by the cluster CA: the API server takes CN as the user, O as groups. */
  client(user: string, groups: string[] = []): KeyPair {
    const subject = `/CN=${user}${groups.map((g) => `/O=${g}`).join('')}`;
    return this.issue(`client-${this.serial}`, subject, 'extendedKeyUsage=clientAuth');
  }

  /** A certificate from a CA the server does not trust: a client presenting it is anonymous. */
  foreignClient(user: string): KeyPair {
    return new TestPki(mkdtempSync(join(this.dir, 'foreign-'))).client(user);
  }

  private issue(name: string, subject: string, extensions: string): KeyPair {
    const paths = { certPath: join(this.dir, `${name}.crt`), keyPath: join(this.dir, `${name}.key`) };
    const csr = join(this.dir, `${name}.csr`);
    const ext = join(this.dir, `${name}.ext`);
    writeFileSync(ext, `${extensions}\n`);
    openssl(['req', ...EC, '-keyout', paths.keyPath, '-out', csr, '-subj', subject]);
    openssl(['x509', '-req', '-in', csr, '-CA', this.ca.certPath, '-CAkey', this.ca.keyPath, '-set_serial', String(this.serial++), '-days', '2', '-out', paths.certPath, '-extfile', ext]);
    return read(paths);
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
