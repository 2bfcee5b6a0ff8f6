// From the config's etcd fields to what the gateway client needs: endpoint URLs and the TLS material,
// read once when the store opens. whereabouts' etcd_host was a bare "host:port" handed to the Go client,
// which spoke TLS when certificate files were set; a bare endpoint here means the same.
import { readFileSync } from 'node:fs';
import { Code, CniError, showValue } from '../../../lib/cni/errors.ts';
import type { TlsSettings } from '../../../lib/http.ts';
import type { EtcdSettings } from '../../config/schema.ts';

const DEFAULT_PORT = '2379';
const ENDPOINT_FIELDS = 'ipam.etcd_host/ipam.etcd_endpoints';

export interface GatewaySettings {
  /** Origins only ("https://10.0.0.1:2379"): the gateway paths are appended. */
  endpoints: string[];
  tls: TlsSettings;
  /** The files the TLS material came from, for messages. */
  files: { ca?: string | undefined; cert?: string | undefined; key?: string | undefined };
  username?: string | undefined;
  password?: string | undefined;
}

function endpointUrl(text: string, tlsFilesSet: boolean): string {
  const trimmed = text.trim();
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed) ? trimmed : `${tlsFilesSet ? 'https' : 'http'}://${trimmed}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new CniError(Code.InvalidConfig, `invalid network config: ${ENDPOINT_FIELDS}: ${showValue(text)} is neither "host:port" nor an http(s) URL`);
  }
  if (url.username || url.password) {
    // Not shown: the URL holds a password.
    throw new CniError(Code.InvalidConfig, `invalid network config: ${ENDPOINT_FIELDS}: the endpoint for host ${url.hostname} carries credentials; use ipam.etcd_username and ipam.etcd_password`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new CniError(Code.InvalidConfig, `invalid network config: ${ENDPOINT_FIELDS}: ${showValue(text)} must use http or https, not ${url.protocol.replace(/:$/, '')}`);
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash || url.hostname === '') {
    throw new CniError(Code.InvalidConfig, `invalid network config: ${ENDPOINT_FIELDS}: ${showValue(text)} must be an etcd client URL with no path, e.g. "https://10.0.0.1:2379"`);
  }
  return `${url.protocol}//${url.hostname}:${url.port || DEFAULT_PORT}`;
}

function readPem(field: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const why = err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : String(err);
    throw new CniError(Code.IoFailure, `cannot read ${field} ${showValue(path)}: ${why}`);
  }
}

const PEM_CERTIFICATE = '-----BEGIN CERTIFICATE-----';

/** Checks that the PEM files make a usable TLS context now, rather than failing on every request. */
function checkTlsMaterial(tls: TlsSettings, files: GatewaySettings['files']): void {
  // OpenSSL takes a CA file without any certificate in it silently, and then trusts nothing.
  for (const [field, pem, path] of [['ipam.etcd_ca_cert_file', tls.ca, files.ca], ['ipam.etcd_cert_file', tls.cert, files.cert]] as const) {
    if (pem !== undefined && !pem.includes(PEM_CERTIFICATE)) {
      throw new CniError(Code.InvalidConfig, `invalid network config: ${field} ${showValue(path)} holds no PEM certificate ("${PEM_CERTIFICATE}")`);
    }
  }
  try {
    process.getBuiltinModule('node:tls').createSecureContext({ ca: tls.ca, cert: tls.cert, key: tls.key });
  } catch (err) {
    // OpenSSL's reason ("no start line", "key values mismatch") never quotes the file's content.
    const why = err instanceof Error ? err.message : String(err);
    const named = [files.ca && `ipam.etcd_ca_cert_file ${showValue(files.ca)}`, files.cert && `ipam.etcd_cert_file ${showValue(files.cert)}`, files.key && `ipam.etcd_key_file ${showValue(files.key)}`]
      .filter(Boolean).join(', ');
    throw new CniError(Code.InvalidConfig, `invalid network config: ${named}: not a usable PEM certificate and key: ${why}`);
  }
}

export function gatewaySettings(settings: EtcdSettings): GatewaySettings {
  const { caCertFile, certFile, keyFile } = settings;
  // Config templates often carry "" for fields they do not use: "" is the same as unset.
  const username = settings.username === '' ? undefined : settings.username;
  const password = settings.password === '' ? undefined : settings.password;
  if ((certFile === undefined) !== (keyFile === undefined)) {
    const [set, unset] = certFile === undefined ? ['etcd_key_file', 'etcd_cert_file'] : ['etcd_cert_file', 'etcd_key_file'];
    throw new CniError(Code.InvalidConfig, `invalid network config: ipam.${set} is set but ipam.${unset} is not: a client certificate needs both`);
  }
  if ((username === undefined) !== (password === undefined)) {
    const missing = password === undefined ? 'ipam.etcd_password' : 'ipam.etcd_username';
    throw new CniError(Code.InvalidConfig, `invalid network config: ${missing} is missing: etcd authentication needs both a user name and a password`);
  }
  const tlsFilesSet = caCertFile !== undefined || certFile !== undefined;
  if (settings.endpoints.length === 0) {
    throw new CniError(Code.InvalidConfig, `invalid network config: ${ENDPOINT_FIELDS} must name at least one etcd endpoint for "datastore": "etcd"`);
  }
  const endpoints = [...new Set(settings.endpoints.map((e) => endpointUrl(e, tlsFilesSet)))];
  const tls: TlsSettings = {};
  if (caCertFile !== undefined) tls.ca = readPem('ipam.etcd_ca_cert_file', caCertFile);
  if (certFile !== undefined && keyFile !== undefined) {
    tls.cert = readPem('ipam.etcd_cert_file', certFile);
    tls.key = readPem('ipam.etcd_key_file', keyFile);
  }
  const files = { ca: caCertFile, cert: certFile, key: keyFile };
  if (tlsFilesSet) checkTlsMaterial(tls, files);
  return { endpoints, tls, files, username, password };
}
