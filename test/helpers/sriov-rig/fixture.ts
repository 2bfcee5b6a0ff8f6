// The rig for a test file: made when the file loads, removed after its tests (also when they fail).
import { afterAll } from 'vitest';
import { cni, requireBuild, type CniCall, type CniRun } from '../exec.ts';
import { SriovRig, type RigOptions } from './rig.ts';

export function useRig(options: RigOptions): SriovRig {
  requireBuild();
  const rig = new SriovRig(options);
  afterAll(() => rig.cleanup());
  return rig;
}

/** Runs the BUILT sriov plugin on the rig, as a runtime on that node would. */
export const sriov = (rig: SriovRig, call: CniCall): Promise<CniRun> => cni('sriov', { ...call, env: rig.env(call.env) });
