// npm run bench -- [startup|ipam|macvlan|sriov|etcd|kubernetes|all] [args]: benchmarks printed side by side, as ratios.
const benches: Record<string, () => Promise<{ main(args: ReadonlyArray<string>): unknown }>> = {
  startup: () => import('./bench/startup.ts'),
  ipam: () => import('./bench/ipam.ts'),
  macvlan: () => import('./bench/macvlan.ts'),
  sriov: () => import('./bench/sriov.ts'),
  etcd: () => import('./bench/etcd.ts'),
  kubernetes: () => import('./bench/kubernetes.ts'),
};

const [which = 'all', ...rest] = process.argv.slice(2);
const names = which === 'all' ? Object.keys(benches) : [which];
for (const name of names) {
  const load = benches[name];
  if (!load) {
    console.error(`bench: unknown benchmark "${name}"; choose one of ${Object.keys(benches).join(', ')} or all`);
    process.exit(2);
  }
  await (await load()).main(rest);
}
