import { defaultConfig, RedlockConfig } from '../lib/config';

export default () => ({
  /** See README "Configuration"; where the locks live (clients, cluster, sentinel or redis) has no default. */
  redlock: { ...defaultConfig, schedule: { ...defaultConfig.schedule } } as RedlockConfig,
  dump: {
    /**
     * Egg writes the config to run/*_config.json at boot and masks fields named like `password`,
     * but writes arrays as they are and does not know `sentinelPassword` or TLS keys: so a list of
     * Redis servers with their passwords, and private keys, are left out.
     */
    ignoreKeyPaths: Object.fromEntries([
      'clients', 'cluster.nodes', 'cluster.redisOptions.tls', 'sentinel.sentinelPassword', 'sentinel.tls', 'sentinel.sentinelTLS',
    ].map(path => [ `config.redlock.${path}`, true ])),
  },
});
