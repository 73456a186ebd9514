import type { Application } from 'egg';
import { RedlockBoot } from './lib/plugin';

export default class AppBoot extends RedlockBoot {
  constructor(app: Application) {
    super(app, 'app');
  }
}
