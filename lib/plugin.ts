import type { Agent, Application, IBoot } from 'egg';
import { validateConfig } from './config';
import { createRedlock } from './boot';
import { lockAppSchedules } from './schedule';

/**
 * The plugin's lifecycle on one side (app or agent). The client is built in `didLoad` because Egg 3
 * awaits `didLoad`/`willReady` before `app.ready()` resolves but does not await `didReady`: code
 * that runs once the app is ready must find `app.redlock` connected.
 */
export class RedlockBoot implements IBoot {
  constructor(private readonly app: Application | Agent, private readonly side: 'app' | 'agent') {}

  configDidLoad(): void {
    validateConfig(this.app.config.redlock);
  }

  async didLoad(): Promise<void> {
    const config = this.app.config.redlock;
    if (this.side === 'app' && !config.app && config.schedule.enable) {
      this.app.coreLogger.warn('[egg-distributed-lock] config.redlock.app is false: scheduled jobs are NOT locked and run on every machine');
    }
    if (!config[this.side]) return;
    this.app.redlock = await createRedlock(this.app);
    // Workers run the schedules; egg-schedule has loaded them by now (it is a dependency).
    if (this.side === 'app' && config.schedule.enable) lockAppSchedules(this.app as Application);
  }

  /** Releases every lock this process holds and quits only the clients the plugin created. */
  async beforeClose(): Promise<void> {
    await this.app.redlock?.close();
  }
}
