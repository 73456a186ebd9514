import Redis from 'ioredis';

/** A plain ioredis connection (the library defaults), resolved once it is ready. */
export async function connectRedis(port: number): Promise<Redis> {
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true });
  await client.connect();
  return client;
}

export const connectAll = (ports: number[]) => Promise.all(ports.map(connectRedis));

export async function quitAll(clients: Redis[]): Promise<void> {
  await Promise.all(clients.map(c => c.quit().catch(() => c.disconnect())));
}
