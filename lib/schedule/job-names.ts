import { realpathSync } from 'node:fs';
import path from 'node:path';

/**
 * The folders whose schedules are the app's own: `app/schedule` of the app and
 * `config.schedule.directory`. Plugins' schedules (log rotation, tmp cleaning) are per-machine work.
 */
export function appScheduleDirs(baseDir: string, extra: string[] = []): string[] {
  return [ path.join(baseDir, 'app/schedule'), ...extra ].map(dir => {
    try {
      return realpathSync(dir);
    } catch {
      return path.resolve(dir);
    }
  });
}

/**
 * A job's fleet-wide name: its path under the schedule folder without extension (`report`,
 * `sub/cleanup`), with `/` on every OS, so `.ts` and `.js` builds on every machine agree.
 * Undefined for a file outside the app's schedule folders.
 */
export function jobName(file: string, dirs: string[]): string | undefined {
  for (const dir of dirs) {
    const relative = path.relative(dir, file);
    if (relative && !relative.startsWith('..') && !path.isAbsolute(relative)) {
      return relative.slice(0, relative.length - path.extname(relative).length).split(path.sep).join('/');
    }
  }
  return undefined;
}
