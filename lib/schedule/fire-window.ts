import parser from 'cron-parser';
import ms from 'humanize-ms';
import { MAX_TTL } from '../arguments';

/** What egg-schedule reads from a task's `schedule` to decide when it fires. */
export interface FireSettings {
  cron?: string;
  cronOptions?: Record<string, unknown>;
  interval?: string | number;
  /** Also run once as the app starts. */
  immediate?: boolean;
}

/**
 * The fire a run belongs to, and how long its lock must outlive the run so that no other machine
 * runs the same fire again.
 */
export interface FireWindow {
  /** The fire time (cron: the tick; interval: the moment it was taken). */
  fireTime: number;
  /** Keep the lock (with the winner's value) until then, even if the job ended sooner. */
  holdUntil: number;
}

/**
 * How far before its tick a run at boot (`immediate: true`) still counts as that tick's, as a timer
 * firing a little early would. One that comes sooner is not the tick's: taking the tick's window, it
 * would make the whole fleet skip the tick itself. (Any other run counts as the nearest tick's from
 * either side: egg-schedule sets its timer by the wall clock, which may be stepped back meanwhile.)
 */
const EARLY_BOOT_RUN_MS = 1000;

/**
 * Cron: every machine fires tick T by its own clock, so the run is tied to the tick nearest to now
 * (a worker gets its agent's message within ms; see EARLY_BOOT_RUN_MS for a run at boot) and the
 * lock is held until half-way to the next tick, or `clockTolerance` after T when that is sooner. A
 * machine whose clock differs by less than that fires T while the lock is still held (and skips),
 * and fires T+1 after it is gone.
 *
 * Interval: timers of different machines are not aligned, so there is no shared tick: the lock is
 * held for the interval less a margin for timer jitter (10%, at most 1 s), which lets at most one run
 * per interval through across the fleet while the winner's own next timer finds it free.
 */
export function fireWindow(settings: FireSettings, now: number, clockTolerance: number, atBoot = false): FireWindow {
  if (settings.interval) {
    const period = ms(settings.interval);
    return { fireTime: now, holdUntil: now + Math.min(period - Math.min(period / 10, 1000), MAX_TTL) };
  }
  if (settings.cron) {
    const tick = nearestTick(settings, now);
    const window = tick && Math.min(Math.floor(tick.period / 2), clockTolerance);
    // A run far from any tick was not fired by the cron (or arrived too late to tell which fire): no window.
    if (tick && now - tick.time < window! && tick.time - now < Math.min(window!, atBoot ? EARLY_BOOT_RUN_MS : Infinity)) {
      return { fireTime: tick.time, holdUntil: tick.time + window! };
    }
  }
  return { fireTime: now, holdUntil: now };
}

/**
 * The tick nearest to `now` and its period. Near `cronOptions.startDate`/`endDate` a tick may have
 * no neighbour on one side: the period is then taken from the other side (the last tick before
 * endDate gets the window of the one before it), and a lone tick is bounded by clockTolerance only.
 */
function nearestTick(settings: FireSettings, now: number): { time: number; period: number } | undefined {
  const at = (date: number) => parser.parseExpression(settings.cron!, { ...settings.cronOptions, currentDate: new Date(date) });
  const tickUpTo = (t: number) => outOfRange(() => at(t + 1).prev().getTime()); // the latest tick <= t
  const tickAfter = (t: number) => outOfRange(() => at(t).next().getTime()); // the first tick > t
  const previous = tickUpTo(now);
  const next = tickAfter(now);
  const time = previous === undefined || (next !== undefined && next - now < now - previous) ? next : previous;
  if (time === undefined) return undefined; // no tick at all within startDate/endDate: no fire window
  const after = tickAfter(time);
  const before = tickUpTo(time - 1);
  return { time, period: after !== undefined ? after - time : before !== undefined ? time - before : Infinity };
}

/** cron-parser throws past startDate/endDate: undefined there. */
function outOfRange(tick: () => number): number | undefined {
  try {
    return tick();
  } catch {
    return undefined;
  }
}
