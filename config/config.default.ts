import { defaultConfig, RedlockConfig } from '../lib/config';

export default () => ({
  /** See README "Configuration"; where the locks live (clients, cluster, sentinel or redis) has no default. */
  redlock: { ...defaultConfig, schedule: { ...defaultConfig.schedule } } as RedlockConfig,
});
