import { readdirSync, realpathSync, statSync } from 'node:fs';
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
    if (relative && !relative.startsWith('..') && !path.isAbsolute(relative)) return nameOf(relative);
  }
  return undefined;
}

function nameOf(relative: string): string {
  return relative.slice(0, relative.length - path.extname(relative).length).split(path.sep).join('/');
}

/**
 * The files in the schedule folders that really live elsewhere (symlinked, or in a symlinked
 * folder), by real path → job name. egg-schedule registers a task under its real path, outside the
 * folder, where `jobName` would take it for a plugin's schedule and leave it unlocked.
 */
export function linkedJobNames(dirs: string[]): Map<string, string> {
  const names = new Map<string, string>();
  const walked = new Set<string>(); // real folders, so a symlink loop ends
  const walk = (dir: string, relative: string) => {
    const real = realpathSync(dir);
    if (walked.has(real)) return;
    walked.add(real);
    for (const entry of readdirSync(dir)) {
      const file = path.join(dir, entry);
      try {
        if (statSync(file).isDirectory()) {
          walk(file, path.join(relative, entry));
          continue;
        }
        const target = realpathSync(file);
        if (target !== file) names.set(target, nameOf(path.join(relative, entry)));
      } catch {
        // a dangling link: nothing egg-schedule could load
      }
    }
  };
  for (const dir of dirs) {
    try {
      walk(dir, '');
    } catch {
      // no such folder
    }
  }
  return names;
}
