import type { Agent, Application, IBoot } from 'egg';
import { validateConfig } from './config';
import { createRedlock } from './boot';

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
    if (!this.app.config.redlock[this.side]) return;
    this.app.redlock = await createRedlock(this.app);
  }

  /** Releases every lock this process holds and quits only the clients the plugin created. */
  async beforeClose(): Promise<void> {
    await this.app.redlock?.close();
  }
}
