// Pod churn on the SR-IOV rig with the BUILT executable: 200 ADD/DEL cycles over 4 VFs by 4 concurrent
// workers (two pick a VF by deviceID, two let the plugin pick one of the PF), the plugin killed with
// SIGKILL at random moments, some pods dying before their DEL, every DEL repeated until it succeeds as
// the kubelet does. Then GC of everything: every VF is home with its name, MAC, MTU and VF table entry,
// no lease is left, nothing is on record, and `underlay doctor` flags nothing.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIN } from '../helpers/exec.ts';
import { leasesIn } from '../helpers/leases.ts';
import { sh } from '../helpers/netns.ts';
import { sriov, useRig } from '../helpers/sriov-rig/fixture.ts';
import type { SriovRig } from '../helpers/sriov-rig/rig.ts';

const rig = useRig({ subnet: '10.155.0' });
const CYCLES = 200;
const WORKERS = 4;
const ipam = { type: 'whereabouts', range: `${rig.subnet}.0/24`, range_start: `${rig.subnet}.10`, file_store_dir: rig.leaseDir };
const configOf = (worker: number) => ({
  cniVersion: '1.1.0', name: 'churn', type: 'sriov', ipam, vlan: 100 + worker, trust: 'on', mac: `02:00:00:00:c0:0${worker}`,
  ...(worker < 2 ? { master: rig.pf } : { deviceID: rig.vfs[worker]!.pci }),
});

interface Outcome { code: number | null; killed: boolean; stdout: string }

/** Processes still alive in a process group, but for arping, which lingers a second by design. */
function groupAlive(pgid: number): boolean {
  for (const pid of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === pgid && !stat.includes('(arping)')) return true;
    } catch {
      // Gone while we looked.
    }
  }
  return false;
}

/** Runs one verb; with `killAfterMs`, SIGKILLs the plugin (only it, as the kubelet does) at that moment. */
async function run(r: SriovRig, command: string, id: string, netns: string, config: object, killAfterMs?: number): Promise<Outcome> {
  const child = spawn(join(BIN, 'sriov'), [], {
    detached: true,
    env: { ...r.env(), CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: netns, CNI_IFNAME: 'net1', CNI_PATH: BIN, CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=churn;K8S_POD_NAME=${id}` },
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  let stdout = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stdin.on('error', () => {});
  child.stdin.end(JSON.stringify(config));
  const timer = killAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  const { code, signal } = await new Promise<{ code: number | null; signal: string | null }>((resolve) => child.on('close', (c, s) => resolve({ code: c, signal: s })));
  clearTimeout(timer);
  // What it had started (an ip batch in the middle of its work) finishes on its own before the
  // runtime's next call, as it would on a node.
  for (let i = 0; i < 250 && groupAlive(child.pid!); i++) await new Promise((res) => setTimeout(res, 20));
  return { code, killed: signal === 'SIGKILL', stdout };
}

const stats = { adds: 0, addOk: 0, busy: 0, killed: 0, died: 0, delRetries: 0 };
const unexpected: string[] = [];
/** Set when a worker fails: the others stop at their next cycle, so none outlives the test's cleanup. */
let stop = false;

async function worker(w: number): Promise<void> {
  const config = configOf(w);
  for (let c = 0; c < CYCLES / WORKERS && !stop; c++) {
    const id = `w${w}c${c}`;
    const netns = rig.pod(id);
    const kill = Math.random() < 0.3 ? Math.random() * 400 : undefined;
    const add = await run(rig, 'ADD', id, netns, config, kill);
    stats.adds++;
    if (add.killed) stats.killed++;
    else if (add.code === 0) stats.addOk++;
    else if (/"code":11/.test(add.stdout)) stats.busy++; // another worker's pod holds the VF: the kubelet retries later
    else unexpected.push(`ADD ${id}: ${add.stdout}`);
    if (add.code === 0 && Math.random() < 0.15) {
      rig.podNetnsDied(netns, ['net1']); // the pod's netns went before its DEL (#126)
      stats.died++;
    }
    for (let attempt = 0; ; attempt++) {
      const del = await run(rig, 'DEL', id, netns, config, Math.random() < 0.2 ? Math.random() * 300 : undefined);
      if (del.code === 0) break;
      if (del.killed) stats.killed++;
      else unexpected.push(`DEL ${id}: ${del.stdout}`);
      stats.delRetries++;
      if (attempt > 5) throw new Error(`DEL ${id} keeps failing: ${del.stdout}`);
    }
    rig.deletePod(netns);
  }
}

describe('churn', () => {
  it(`${CYCLES} ADD/DEL cycles over ${rig.vfs.length} VFs with kill -9 at random moments leave every VF as it was`, { timeout: 600_000 }, async () => {
    const workers = await Promise.allSettled(Array.from({ length: WORKERS }, (_, w) => worker(w).catch((err: unknown) => {
      stop = true;
      throw err;
    })));
    for (const outcome of workers) if (outcome.status === 'rejected') throw outcome.reason;
    console.log(`churn: ${JSON.stringify(stats)}`);
    expect(unexpected).toEqual([]);
    expect(stats.addOk).toBeGreaterThan(CYCLES / 3);
    expect(stats.killed).toBeGreaterThan(20);

    const gc = await sriov(rig, { command: 'GC', config: { ...configOf(0), 'cni.dev/valid-attachments': [] } });
    expect(gc.exitCode, gc.stdout).toBe(0);

    for (const vf of rig.vfs) {
      expect(rig.vfTable()[vf.index]).toMatchObject({ address: '00:00:00:00:00:00', vlan_list: [{}], rate: { max_tx: 0, min_tx: 0 }, spoofchk: true, trust: false, link_state: 'auto' });
      const link = rig.hostNetdev(vf);
      expect(link && { name: link.ifname, mac: link.address, mtu: link.mtu, up: link.flags.includes('UP'), altnames: link.altnames ?? [] }).toEqual({ name: vf.name, mac: vf.mac, mtu: vf.mtu, up: true, altnames: [] });
      expect(rig.sysfsNet(vf)).toEqual([vf.name]);
    }
    expect(leasesIn(rig.leaseDir)).toEqual([]);
    // No record, no marker, no temp file; the lock files (and what SQLite keeps beside them) stay.
    expect(sh(`find ${rig.stateDir} -type f ! -path '*/vf_lock/*'`).trim()).toBe('');
    const doctor = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(join(BIN, 'underlay'), ['doctor', '--json'], { env: rig.env(), stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      child.on('close', (code) => resolve({ code, out }));
    });
    const report = JSON.parse(doctor.out) as { pfs: Array<{ vfs: Array<{ issues: string[] }> }> };
    expect(report.pfs[0]!.vfs.flatMap((vf) => vf.issues)).toEqual([]);
    expect(doctor.code).toBe(0);
  });
});
