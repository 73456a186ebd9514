import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** A free TCP port on loopback, as the OS hands one out. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * A real `redis-server` on a free loopback port, with nothing persisted, which a test can kill,
 * pause (SIGSTOP) and restart on the same port. Never the machine's shared 6379.
 */
export class RedisServer {
  private process?: ChildProcess;

  private constructor(readonly port: number, private readonly extraArgs: string[], private readonly configFile?: string) {}

  /** `configFile` comes first on the command line, as a Sentinel needs (`--sentinel` in `extraArgs`). */
  static async start(extraArgs: string[] = [], configFile?: string): Promise<RedisServer> {
    const server = new RedisServer(await freePort(), extraArgs, configFile);
    await server.restart();
    return server;
  }

  get running(): boolean {
    return !!this.process && this.process.exitCode === null && this.process.signalCode === null;
  }

  /** Starts the server (again) on its port and resolves once it accepts connections. */
  restart(): Promise<void> {
    if (this.running) return Promise.resolve();
    const child = spawn('redis-server', [
      ...(this.configFile ? [ this.configFile ] : []), '--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      // --dir, new at each start: a replica stores the snapshot it syncs from its master there (not in
      // the checkout), and a server started later in a shared dir would load it
      '--daemonize', 'no', '--loglevel', 'warning', '--logfile', '', '--dir', mkdtempSync(path.join(tmpdir(), 'redlock-redis-')), ...this.extraArgs,
    ], { stdio: [ 'ignore', 'pipe', 'pipe' ] });
    this.process = child;
    // A test run that ends early (a timeout, --exit) must not leave servers behind.
    const reap = () => child.kill('SIGKILL');
    process.once('exit', reap);
    child.once('exit', () => process.removeListener('exit', reap));
    return new Promise((resolve, reject) => {
      let output = '';
      const timer = setTimeout(() => {
        clearInterval(probe);
        child.kill('SIGKILL'); // leave no stray server behind
        reject(new Error(`redis-server on ${this.port} did not start: ${output}`));
      }, 10000);
      const probe = setInterval(async () => {
        if (await this.ping()) {
          clearInterval(probe);
          clearTimeout(timer);
          resolve();
        }
      }, 20);
      child.stdout!.on('data', chunk => { output += chunk; });
      child.stderr!.on('data', chunk => { output += chunk; });
      child.once('error', err => { clearInterval(probe); clearTimeout(timer); reject(err); });
      child.once('exit', code => {
        clearInterval(probe);
        clearTimeout(timer);
        reject(new Error(`redis-server on ${this.port} exited with ${code}: ${output}`));
      });
    });
  }

  private ping(): Promise<boolean> {
    return new Promise(resolve => {
      const socket = connect(this.port, '127.0.0.1');
      socket.once('connect', () => { socket.end('PING\r\n'); });
      // -NOAUTH: a server with requirepass is up too.
      socket.once('data', (d: Buffer) => { socket.destroy(); resolve(/^(\+PONG|-NOAUTH)/.test(d.toString())); });
      socket.once('error', () => resolve(false));
    });
  }

  /** Kills the server (SIGKILL): its keys are gone, as with a crash of a node that keeps nothing on disk. */
  async kill(): Promise<void> {
    const child = this.process;
    if (!child || !this.running) return;
    child.kill('SIGCONT');
    const exited = new Promise(resolve => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  pause(): void {
    this.process?.kill('SIGSTOP');
  }

  resume(): void {
    this.process?.kill('SIGCONT');
  }
}

/** Starts `n` servers in parallel. */
export function startRedisServers(n: number, extraArgs: string[] = []): Promise<RedisServer[]> {
  return Promise.all(Array.from({ length: n }, () => RedisServer.start(extraArgs)));
}

export async function killAll(servers: RedisServer[]): Promise<void> {
  await Promise.all(servers.map(s => s.kill()));
}

/**
 * A real Redis Cluster of `n` masters (no replicas) on free ports, slots spread by `redis-cli
 * --cluster create`; resolves once the cluster says it is ok.
 */
export async function startRedisCluster(n = 3): Promise<RedisServer[]> {
  const dir = mkdtempSync(path.join(tmpdir(), 'redlock-cluster-'));
  const nodes = await Promise.all(Array.from({ length: n }, (_, i) => RedisServer.start([
    '--cluster-enabled', 'yes', '--cluster-config-file', path.join(dir, `nodes-${i}.conf`), '--dir', dir,
  ])));
  execFileSync('redis-cli', [ '--cluster', 'create', ...nodes.map(node => `127.0.0.1:${node.port}`), '--cluster-replicas', '0', '--cluster-yes' ], { stdio: 'ignore' });
  const deadline = Date.now() + 10000;
  while (!execFileSync('redis-cli', [ '-p', String(nodes[0].port), 'cluster', 'info' ], { encoding: 'utf8' }).includes('cluster_state:ok')) {
    if (Date.now() > deadline) throw new Error('the Redis Cluster did not reach cluster_state:ok in 10 s');
    await sleep(100);
  }
  return nodes;
}
