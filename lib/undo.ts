// A failed ADD must leave nothing behind. Each step that changes the world registers how to undo it;
// on failure the steps are undone newest first, and an undo that itself fails is logged, not thrown,
// so the original error is the one the runtime sees.
import { log } from './log.ts';

export class Undo {
  private readonly steps: Array<{ what: string; undo: () => unknown }> = [];

  push(what: string, undo: () => unknown): void {
    this.steps.push({ what, undo });
  }

  async run(): Promise<void> {
    for (const step of this.steps.reverse()) {
      try {
        await step.undo();
      } catch (err) {
        log.error(`while undoing ${step.what}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    this.steps.length = 0;
  }

  /** Runs `body`; if it throws, undoes everything pushed so far and rethrows. */
  async guard<T>(body: () => Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (err) {
      await this.run();
      throw err;
    }
  }
}
