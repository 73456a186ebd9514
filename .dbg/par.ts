import { nodeRedlock4, plugin, rawFloor } from '../bench/contenders';
import { ServerCpu } from '../bench/server-cpu';
import { QuietLogger } from '../bench/quiet-logger';
(async () => {
  const ports = [6399];
  const cpu = await ServerCpu.connect(ports);
  const logger = new QuietLogger();
  for (const c of [plugin(logger), nodeRedlock4, plugin(logger), nodeRedlock4]) {
    const pool = await Promise.all(Array.from({ length: 50 }, () => c.connect(ports)));
    const run = async (ms: number) => { const until = Date.now() + ms; let ops = 0; await Promise.all(pool.map(async (cl, i) => { while (Date.now() < until) { const h = await cl.acquire('par-' + i); await h.release(); ops++; } })); return ops; };
    await run(500);
    const s0 = await cpu.usedUs(); const c0 = process.cpuUsage(); const t0 = Date.now();
    const ops = await run(3000);
    const d = process.cpuUsage(c0); const s1 = await cpu.usedUs();
    console.log(c.label.slice(0, 30).padEnd(30), Math.round(ops / ((Date.now() - t0) / 1000)), 'ops/s; client CPU', ((d.user + d.system) / ops).toFixed(1), 'µs/op; redis CPU', ((s1 - s0) / ops).toFixed(1), 'µs/op');
    await Promise.all(pool.map(p => p.close()));
  }
  await cpu.close(); process.exit(0);
})();
