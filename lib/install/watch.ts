// Tells when the service account's files may have changed. Kubernetes rotates a projected token by
// swapping a symlink (..data) inside the directory, and a file replaced by rename keeps no watch on
// its old inode, so directories are watched, not files: the service account directory, and the
// directories its token and CA really live in (a write into ..data's target is seen too). A slow
// periodic pass covers what inotify cannot see (a directory missing at start, a watch lost).
import { realpathSync, watch, type FSWatcher } from 'node:fs';
import { dirname, join } from 'node:path';

export interface Watch {
  stop(): void;
}

export interface WatchOptions {
  dir: string;
  /** The files in `dir` whose real location is watched as well. */
  files: ReadonlyArray<string>;
  /** Called after a burst of events settles, and on every periodic pass. */
  onChange: () => void;
  resyncMs: number;
  /** One rotation is several events (new dir, symlink, rename, cleanup): wait for them to settle. */
  settleMs?: number;
  say: (line: string) => void;
}

export function watchServiceAccount({ dir, files, onChange, resyncMs, settleMs = 100, say }: WatchOptions): Watch {
  const watchers = new Map<string, FSWatcher>();
  let settle: NodeJS.Timeout | undefined;
  let lastProblem = '';
  let stopped = false;

  const wanted = (): Set<string> => {
    const dirs = new Set([dir]);
    for (const file of files) {
      try {
        dirs.add(dirname(realpathSync(join(dir, file))));
      } catch {
        // Not there (yet): the directory watch sees it arrive.
      }
    }
    return dirs;
  };

  // Follows a rotation: the old ..data target is gone, the new one is to be watched.
  const rewatch = () => {
    if (stopped) return;
    const want = wanted();
    for (const [path, watcher] of watchers) {
      if (want.has(path)) continue;
      watcher.close();
      watchers.delete(path);
    }
    for (const path of want) {
      if (watchers.has(path)) continue;
      try {
        const watcher = watch(path, { persistent: true }, changed);
        watcher.on('error', () => {
          watcher.close();
          watchers.delete(path);
        });
        watchers.set(path, watcher);
      } catch (err) {
        if (path !== dir) continue;
        const problem = err instanceof Error ? err.message : String(err);
        if (problem !== lastProblem) say(`cannot watch ${dir} (${problem}); checking every ${Math.round(resyncMs / 1000)} s instead`);
        lastProblem = problem;
        return;
      }
    }
    if (lastProblem) say(`watching ${dir} again`);
    lastProblem = '';
  };

  function changed(): void {
    clearTimeout(settle);
    settle = setTimeout(() => {
      rewatch();
      onChange();
    }, settleMs);
  }

  rewatch();
  const resync = setInterval(() => {
    rewatch();
    onChange();
  }, resyncMs);

  return {
    stop() {
      stopped = true;
      clearTimeout(settle);
      clearInterval(resync);
      for (const watcher of watchers.values()) watcher.close();
      watchers.clear();
    },
  };
}
