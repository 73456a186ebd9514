import Redis from 'ioredis';
import * as NEW from '../lib/scripts';
const r = new Redis({ port: 6399 });
async function usec(): Promise<number> { const s = await r.info('commandstats'); const m = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(s); return m ? Number(m[2]) : 0; }
(async () => {
  const v = 'a'.repeat(32) + '@vm/1';
  const nr4 = 'for i, key in ipairs(KEYS) do if redis.call("exists", key) == 1 then return 0 end end for i, key in ipairs(KEYS) do redis.call("set", key, ARGV[1], "PX", ARGV[2]) end return #KEYS';
  const noRep = NEW.ACQUIRE.replace('pcall(redis.replicate_commands)', '');
  const cases: Record<string, [string, any[]]> = {
    ours: [NEW.ACQUIRE, [3, 'k', 'k:fence', 'k:waiters', v, 10000, '0']],
    ours_norep: [noRep, [3, 'k', 'k:fence', 'k:waiters', v, 10000, '0']],
    nr4: [nr4, [1, 'k', v, 10000]],
    setnx_incr: ["redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) return redis.call('incr', KEYS[2])", [3, 'k', 'k:fence', 'k:waiters', v, 10000, '0']],
    release: [NEW.RELEASE, [2, 'k', 'k:waiters', v, '0']],
    nr4_release: ['local n = 0 for i, key in ipairs(KEYS) do if redis.call("get", key) == ARGV[1] then n = n + redis.call("del", key) end end return n', [1, 'k', v]],
  };
  const shas: Record<string, string> = {};
  for (const k in cases) shas[k] = await r.script('LOAD', cases[k][0]) as string;
  const tot: Record<string, number> = {};
  for (let round = 0; round < 5; round++) for (const k in cases) {
    const before = await usec();
    for (let i = 0; i < 1000; i++) { await (r as any).evalsha(shas[k], ...cases[k][1]); if (!k.includes('release')) await r.del('k'); else await r.set('k', v); }
    tot[k] = (tot[k] || 0) + await usec() - before;
  }
  for (const k in tot) console.log(k.padEnd(18), (tot[k] / 5000).toFixed(2), 'µs');
  process.exit(0);
})();
