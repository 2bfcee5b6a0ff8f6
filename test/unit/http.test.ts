// lib/http against real local servers: answers, a server that never answers (the deadline), a closed
// port, and TLS with an untrusted certificate and with the right CA.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HttpClient, HttpTlsError, HttpUnreachable } from '../../lib/http.ts';

const dir = mkdtempSync(join(tmpdir(), 'underlay-http-'));
const servers: Server[] = [];
afterAll(() => {
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
});

function listen(server: Server | import("node:https").Server): Promise<number> {
  servers.push(server);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

describe('HttpClient', () => {
  it('sends the method, headers and body, and returns status and body', async () => {
    const port = await listen(createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ method: req.method, auth: req.headers.authorization, body })));
    }));
    const client = new HttpClient();
    const res = await client.request({ method: 'POST', url: `http://127.0.0.1:${port}/v3/kv/range`, headers: { authorization: 't0ken' }, body: '{"key":"a"}', deadline: Date.now() + 5000 });
    client.close();
    expect(res.status).toBe(201);
    expect(JSON.parse(res.body)).toEqual({ method: 'POST', auth: 't0ken', body: '{"key":"a"}' });
  });

  it('gives up at the deadline on a server that never answers, and on a closed port at once', async () => {
    const port = await listen(createServer(() => undefined));
    const client = new HttpClient();
    const started = Date.now();
    await expect(client.request({ method: 'GET', url: `http://127.0.0.1:${port}/`, deadline: Date.now() + 300 })).rejects.toBeInstanceOf(HttpUnreachable);
    expect(Date.now() - started).toBeLessThan(2000);
    const closed = await listen(createServer());
    servers.pop()!.close();
    await new Promise((r) => setTimeout(r, 50));
    const refused = await client.request({ method: 'GET', url: `http://127.0.0.1:${closed}/`, deadline: Date.now() + 5000 }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(HttpUnreachable);
    expect((refused as Error).message).toMatch(/ECONNREFUSED/);
    client.close();
  });

  it('refuses an untrusted certificate as a TLS error, and accepts it with the right CA', async () => {
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    const port = await listen(createTlsServer({ key: readFileSync(key), cert: readFileSync(cert) }, (_req, res) => res.end('{}')));
    const untrusted = new HttpClient();
    await expect(untrusted.request({ method: 'GET', url: `https://127.0.0.1:${port}/`, deadline: Date.now() + 5000 })).rejects.toBeInstanceOf(HttpTlsError);
    untrusted.close();
    const trusted = new HttpClient({ ca: readFileSync(cert) });
    expect((await trusted.request({ method: 'GET', url: `https://127.0.0.1:${port}/`, deadline: Date.now() + 5000 })).status).toBe(200);
    trusted.close();
  });
});
