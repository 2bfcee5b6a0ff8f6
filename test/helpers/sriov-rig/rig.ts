// The SR-IOV test rig. No SR-IOV NIC exists on the test machines, so it stands in for one PF with N VFs:
//  - a sysfs tree in a temp dir (UNDERLAY_SYSFS_ROOT) laid out as the kernel does: the PF's device
//    with sriov_numvfs/sriov_totalvfs, driver and virtfnN links; each VF's device with physfn, driver,
//    net/ and (optionally) infiniband/ entries; class/net/<PF>;
//  - real netdevs: the PF and each VF netdev are veth ends in the host, their peers plugged into a
//    bridge in a "wire" netns (the NIC's embedded switch, with an address to ping);
//  - an `ip` shim (ip-shim.pl) that keeps the PF's VF table and keeps sysfs' net/ entries following
//    the VF netdevs, and an `rdma` shim (rdma-shim.pl) for the RDMA netns mode and device moves.
//    Both go in front of the real tools through PATH, for the plugin process only (env()).
// What a veth cannot do like a VF: it is destroyed, not returned, when its netns is deleted. A test
// that simulates a pod's netns dying calls podNetnsDied, which first does what the kernel does for a
// real VF (moves it to the host under its pod name, RDMA devices back to the host).
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { sh, tag, tryRun } from '../netns.ts';

export interface RigVf {
  index: number;
  pci: string;
  /** The VF netdev's host name, MAC and MTU as the rig made them. */
  name: string;
  mac: string;
  mtu: number;
  rdma?: string;
}

export interface VfRow {
  vf: number;
  address: string;
  vlan_list: Array<{ vlan?: number; qos?: number; protocol?: string }>;
  rate: { max_tx: number; min_tx: number };
  spoofchk: boolean;
  link_state: string;
  trust: boolean;
  [key: string]: unknown;
}

export interface RigOptions {
  vfs?: number;
  /** Give each VF an RDMA device (mlx5_N). */
  rdma?: boolean;
  /** First three octets of the wire's /24, e.g. "10.71.0": the bridge is .1. */
  subnet: string;
}

const HERE = import.meta.dirname;
const PF_PCI = '0000:5e:00.0';
const vfPci = (i: number): string => `0000:5e:02.${i}`;
const INITIAL_ROW = (i: number): string => `${i} 00:00:00:00:00:00 0 0 802.1Q 1 0 auto 0 0 0`;

export class SriovRig {
  readonly id = tag();
  readonly root = mkdtempSync(join(tmpdir(), 'underlay-sriov-rig-'));
  readonly sysfs = join(this.root, 'sys');
  readonly stateDir = join(this.root, 'state');
  readonly leaseDir = join(this.root, 'leases');
  readonly bin = join(this.root, 'bin');
  readonly pf = `s${this.id}f0`;
  readonly pfPci = PF_PCI;
  readonly pfMtu = 9000;
  readonly vfs: RigVf[] = [];
  readonly subnet: string;
  /** The wire netns (the NIC's switch) and a name for our own netns the shims can enter. */
  readonly wire = `u${this.id}w`;
  readonly hostRef = `u${this.id}h`;
  private readonly pods = new Set<string>();

  constructor(options: RigOptions) {
    this.subnet = options.subnet;
    try {
      this.build(options.vfs ?? 4, options.rdma ?? false);
    } catch (err) {
      this.cleanup();
      throw err;
    }
  }

  private build(count: number, rdma: boolean): void {
    const realIp = sh('command -v ip').trim();
    sh(`ip netns add ${this.wire} && ip netns attach ${this.hostRef} ${process.pid}`);
    sh(`ip -n ${this.wire} link add br0 type bridge && ip -n ${this.wire} addr add ${this.subnet}.1/24 dev br0 && ip -n ${this.wire} link set br0 up && ip -n ${this.wire} link set lo up`);
    this.plug(this.pf, `t${this.id}f0`, `02:5e:${this.id.slice(0, 2)}:${this.id.slice(2, 4)}:${this.id.slice(4, 6)}:ff`, this.pfMtu);
    const idBytes = this.id.match(/../g)!.join(':');
    for (let i = 0; i < count; i++) {
      const vf: RigVf = { index: i, pci: vfPci(i), name: `s${this.id}v${i}`, mac: `02:${idBytes}:00:0${i}`, mtu: 1500 };
      if (rdma) vf.rdma = `mlx5_${i + 1}`;
      this.plug(vf.name, `t${this.id}v${i}`, vf.mac, vf.mtu);
      sh(`ip link set dev ${vf.name} alias 'underlay-rig-vf ${vf.pci}'`);
      this.vfs.push(vf);
    }
    this.buildSysfs();
    this.buildShims(realIp);
  }

  /** A veth end in the host, up, its peer in the wire's bridge. */
  private plug(name: string, peer: string, mac: string, mtu: number): void {
    sh(`ip link add ${name} address ${mac} mtu ${mtu} type veth peer name ${peer} netns ${this.wire}`);
    sh(`ip link set ${name} up && ip -n ${this.wire} link set ${peer} mtu ${mtu} master br0 up`);
  }

  private buildSysfs(): void {
    const s = this.sysfs;
    const devices = join(s, 'devices', 'pci0000:5e');
    const dir = (...parts: string[]) => mkdirSync(join(...parts), { recursive: true });
    for (const driver of ['mlx5_core', 'vfio-pci']) dir(s, 'bus', 'pci', 'drivers', driver);
    dir(s, 'class', 'net');
    const device = (pci: string) => {
      dir(devices, pci, 'net');
      symlinkSync(`../../../devices/pci0000:5e/${pci}`, join(s, 'bus', 'pci', 'devices', pci));
      symlinkSync('../../../bus/pci/drivers/mlx5_core', join(devices, pci, 'driver'));
    };
    dir(s, 'bus', 'pci', 'devices');
    device(PF_PCI);
    writeFileSync(join(devices, PF_PCI, 'sriov_numvfs'), `${this.vfs.length}\n`);
    writeFileSync(join(devices, PF_PCI, 'sriov_totalvfs'), '8\n');
    dir(devices, PF_PCI, 'net', this.pf);
    symlinkSync(`../../../${PF_PCI}`, join(devices, PF_PCI, 'net', this.pf, 'device'));
    symlinkSync(`../../devices/pci0000:5e/${PF_PCI}/net/${this.pf}`, join(s, 'class', 'net', this.pf));
    for (const vf of this.vfs) {
      device(vf.pci);
      symlinkSync(`../${vf.pci}`, join(devices, PF_PCI, `virtfn${vf.index}`));
      symlinkSync(`../${PF_PCI}`, join(devices, vf.pci, 'physfn'));
      dir(devices, vf.pci, 'net', vf.name);
      if (vf.rdma) dir(devices, vf.pci, 'infiniband', vf.rdma);
    }
  }

  private buildShims(realIp: string): void {
    const shim = join(this.root, 'shim');
    mkdirSync(join(shim, 'vf'), { recursive: true });
    mkdirSync(join(this.root, 'rdma', 'hidden'), { recursive: true });
    mkdirSync(this.bin);
    mkdirSync(this.stateDir, { mode: 0o700 });
    const conf = [
      `realip ${realIp}`,
      `sysfs ${this.sysfs}`,
      `hostns /run/netns/${this.hostRef}`,
      `pfs ${this.pf}`,
      `vfs.${this.pf} ${this.vfs.map((vf) => vf.pci).join(',')}`,
    ];
    writeFileSync(join(shim, 'config'), `${conf.join('\n')}\n`);
    writeFileSync(join(shim, 'vf', this.pf), this.vfs.map((vf) => `${INITIAL_ROW(vf.index)}\n`).join(''));
    const hostInode = sh(`stat -L -c %i /run/netns/${this.hostRef}`).trim();
    writeFileSync(join(this.root, 'rdma', 'mode'), 'shared\n');
    writeFileSync(join(this.root, 'rdma', 'devices'), this.vfs.filter((vf) => vf.rdma).map((vf) => `${vf.rdma} ${vf.pci} ${hostInode} ${vf.index + 1}\n`).join(''));
    symlinkSync(join(HERE, 'ip-shim.pl'), join(this.bin, 'ip'));
    symlinkSync(join(HERE, 'rdma-shim.pl'), join(this.bin, 'rdma'));
  }

  /** The environment a runtime would give the plugin on this node, plus the rig's tools and roots. */
  env(extra: Record<string, string> = {}): Record<string, string> {
    return { PATH: `${this.bin}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`, UNDERLAY_SYSFS_ROOT: this.sysfs, UNDERLAY_SRIOV_STATE_DIR: this.stateDir, ...extra };
  }

  /** A fresh pod netns; returns its path. */
  pod(name: string): string {
    const full = `u${this.id}${name}`;
    sh(`ip netns add ${full} && ip -n ${full} link set lo up`);
    this.pods.add(full);
    return `/run/netns/${full}`;
  }

  /** Runs a command line through the rig's shims, as the plugin would see it. */
  ip(args: string): string {
    return sh(`PATH=${this.bin}:$PATH ip ${args}`);
  }

  /** The PF's VF table as `ip -j link show` prints it through the shim. */
  vfTable(): VfRow[] {
    const [pf] = JSON.parse(this.ip(`-j link show dev ${this.pf}`)) as Array<{ vfinfo_list: VfRow[] }>;
    return pf!.vfinfo_list;
  }

  /** The VF's netdev in the host: name, MAC, MTU, flags, altnames; undefined when it is not there. */
  hostNetdev(vf: RigVf): { ifname: string; address: string; mtu: number; flags: string[]; altnames?: string[] } | undefined {
    const all = JSON.parse(sh('ip -j link show')) as Array<{ ifname: string; address: string; mtu: number; flags: string[]; ifalias?: string; altnames?: string[] }>;
    return all.find((link) => link.ifalias === `underlay-rig-vf ${vf.pci}`);
  }

  /** sysfs' view: the VF's netdev names listed under net/. */
  sysfsNet(vf: RigVf): string[] {
    return sh(`ls ${join(this.sysfs, 'bus', 'pci', 'devices', vf.pci, 'net')}`).split('\n').filter(Boolean);
  }

  /**
   * The pod's netns dies without DEL: a real VF returns to the host under its pod name (or the first
   * free "devN" if that is taken, as the kernel names it), its RDMA device returns to the host; then
   * the netns is gone.
   */
  podNetnsDied(netns: string, ifNames: ReadonlyArray<string>): void {
    const name = basename(netns);
    for (const ifName of ifNames) {
      if (tryRun(`ip -n ${name} link show dev ${ifName}`).status !== 0) continue;
      const hostNames = new Set((JSON.parse(sh('ip -j link show')) as Array<{ ifname: string }>).map((l) => l.ifname));
      let n = 0;
      while (hostNames.has(`dev${n}`)) n++;
      const target = hostNames.has(ifName) ? ` name dev${n}` : '';
      this.ip(`-n ${name} link set dev ${ifName} netns ${this.hostRef}${target}`);
    }
    const dead = sh(`stat -L -c %i ${netns}`).trim();
    const host = sh(`stat -L -c %i /run/netns/${this.hostRef}`).trim();
    const devicesFile = join(this.root, 'rdma', 'devices');
    const lines = readFileSync(devicesFile, 'utf8').split('\n').filter(Boolean).map((line) => line.split(' '));
    for (const f of lines.filter((f) => f[2] === dead)) {
      f[2] = host;
      mkdirSync(join(this.sysfs, 'bus', 'pci', 'devices', f[1]!, 'infiniband', f[0]!), { recursive: true });
      rmSync(join(this.root, 'rdma', 'hidden', f[0]!), { recursive: true, force: true });
    }
    writeFileSync(devicesFile, lines.map((f) => `${f.join(' ')}\n`).join(''));
    sh(`ip netns del ${name}`);
    this.pods.delete(name);
  }

  /** Rebinds a VF to another driver ("vfio-pci" for DPDK): its netdev leaves sysfs with the old driver. */
  bindDriver(vf: RigVf, driver: string): void {
    const link = join(this.sysfs, 'bus', 'pci', 'devices', vf.pci, 'driver');
    rmSync(link);
    symlinkSync(`../../../bus/pci/drivers/${driver}`, link);
    // A rename to its own name changes nothing in the kernel, and makes the shim bring net/ up to date.
    const name = this.hostNetdev(vf)?.ifname ?? vf.name;
    this.ip(`link set dev ${name} name ${name}`);
  }

  setRdmaMode(mode: 'shared' | 'exclusive'): void {
    sh(`PATH=${this.bin}:$PATH rdma system set netns ${mode}`);
  }

  /** RDMA devices a netns sees, through the rdma shim (ours when netns is undefined). */
  rdmaDevices(netns?: string): string[] {
    const run = netns ? `nsenter --net=${netns} ` : '';
    return (JSON.parse(sh(`PATH=${this.bin}:$PATH ${run}rdma -j dev show`)) as Array<{ ifname: string }>).map((d) => d.ifname);
  }

  deletePod(netns: string): void {
    const name = basename(netns);
    tryRun(`ip netns del ${name}`);
    this.pods.delete(name);
  }

  cleanup(): void {
    for (const pod of this.pods) tryRun(`ip netns del ${pod}`);
    this.pods.clear();
    // The wire holds every peer: deleting it destroys the PF and all VF netdevs, wherever they are.
    tryRun(`ip netns del ${this.wire}`);
    tryRun(`ip netns del ${this.hostRef}`);
    rmSync(this.root, { recursive: true, force: true });
  }
}

