import type Redis from 'ioredis';
import { connectAll, quitAll } from './connections';

/** The CPU time Redis servers have used (INFO cpu: used_cpu_sys + used_cpu_user), summed over servers. */
export class ServerCpu {
  private constructor(private readonly inspectors: Redis[]) {}

  static async connect(ports: number[]): Promise<ServerCpu> {
    return new ServerCpu(await connectAll(ports));
  }

  /** Microseconds of CPU used so far by all servers (µs resolution on Linux). */
  async usedUs(): Promise<number> {
    const infos = await Promise.all(this.inspectors.map(inspector => inspector.info('cpu')));
    return infos.reduce((total, info) => {
      const seconds = (field: string) => Number(new RegExp(`^${field}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
      return total + (seconds('used_cpu_sys') + seconds('used_cpu_user')) * 1e6;
    }, 0);
  }

  async close(): Promise<void> {
    await quitAll(this.inspectors);
  }
}
