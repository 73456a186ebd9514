import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { builtinModules } from 'node:module';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import mm, { MockApplication } from 'egg-mock';
import { RedisServer } from './support/redis-server';
import { inspect } from './support/clients';

/**
 * What `npm i egg-distributed-lock` gives an Egg team: the tarball `npm pack` makes (`files` in
 * package.json), unpacked into an app's node_modules and used from there — not this checkout.
 * Its dependencies resolve from this checkout's node_modules, as they would from the app's.
 */
const ROOT = path.join(__dirname, '..');
const WORK = path.join(ROOT, '.packed');
const APP = path.join(WORK, 'app');
const PACKAGE = path.join(APP, 'node_modules', 'egg-distributed-lock');

/** The fixture app, written beside the unpacked package: plain JS, as many Egg apps are. */
const APP_FILES: Record<string, string> = {
  'package.json': '{ "name": "packed-app" }',
  'config/plugin.js': 'exports.redlock = { enable: true, package: \'egg-distributed-lock\' };',
  'config/config.default.js': `module.exports = () => ({
  keys: 'packed-app',
  redlock: { clients: [{ host: '127.0.0.1', port: Number(process.env.PACKED_APP_REDIS_PORT) }] },
});`,
  'app/schedule/report.js': `exports.schedule = { cron: '0 0 3 * * *', type: 'worker' };
exports.task = async ctx => { ctx.app.reports = [ ...(ctx.app.reports || []), ctx.scheduleLock.key ]; };`,
};

/**
 * TypeScript an Egg team writes against the package, checked with the compiler options of Egg's
 * TypeScript boilerplate. Each @ts-expect-error fails the check if that misuse were accepted, so the
 * types cannot quietly have become `any`.
 */
const TYPED_USE = `import { Application, Context } from 'egg';
import { Lock, LockBusyError } from 'egg-distributed-lock';

export async function pay(app: Application): Promise<number> {
  const lock: Lock = await app.redlock.lock('order:42', 5000);
  try {
    return lock.fencingToken;
  } finally {
    await lock.unlock();
  }
}

export async function tryPay(app: Application): Promise<string> {
  const maybe = await app.redlock.tryLock(['order:42', 'stock:7']);
  // @ts-expect-error tryLock may give null
  maybe.unlock();
  return app.redlock.using('order:43', 5000, async (signal, lock) => (signal.aborted ? '' : lock.key));
}

export function describeError(err: unknown): string {
  return err instanceof LockBusyError ? \`held by \${err.holder} for \${err.remainingMs} ms\` : String(err);
}

export function inTask(ctx: Context): boolean {
  return ctx.scheduleLock?.signal.aborted ?? false;
}

export function config(app: Application): number {
  // @ts-expect-error the prefix is a string
  app.config.redlock.prefix = 7;
  // @ts-expect-error a name is a string or an array of strings
  app.redlock.lock(42);
  return app.config.redlock.ttl;
}
`;

const TSCONFIG = {
  compilerOptions: {
    target: 'es2017', module: 'commonjs', moduleResolution: 'node', strict: true, noImplicitAny: false,
    noUnusedLocals: true, noUnusedParameters: true, skipLibCheck: true, noEmit: true, types: [ 'node' ],
    typeRoots: [ path.join(ROOT, 'node_modules', '@types') ],
  },
  files: [ 'typed-use.ts' ],
};

function write(dir: string, files: Record<string, string>): void {
  for (const [ file, text ] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    writeFileSync(path.join(dir, file), text);
  }
}

function jsFilesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap(entry => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : jsFilesUnder(full);
    return entry.name.endsWith('.js') ? [ full ] : [];
  });
}

describe('the published package (npm pack), installed in an Egg app', () => {
  let server: RedisServer;

  before(async function() {
    this.timeout(120000);
    rmSync(WORK, { recursive: true, force: true });
    mkdirSync(path.dirname(PACKAGE), { recursive: true });
    // pretest has just built lib/; --ignore-scripts skips the prepack build a publish would run.
    const packed = execFileSync('npm', [ 'pack', '--silent', '--ignore-scripts', '--pack-destination', WORK ], { cwd: ROOT });
    const lines = packed.toString().trim().split('\n');
    const tarball = lines[lines.length - 1]; // npm pack names the file on its last line
    execFileSync('tar', [ '-xzf', path.join(WORK, tarball), '-C', path.dirname(PACKAGE) ]);
    renameSync(path.join(path.dirname(PACKAGE), 'package'), PACKAGE);
    write(APP, { ...APP_FILES, 'typed-use.ts': TYPED_USE, 'tsconfig.json': JSON.stringify(TSCONFIG) });
    server = await RedisServer.start();
  });
  after(async () => {
    await server?.kill();
    rmSync(WORK, { recursive: true, force: true });
  });

  it('holds every module its code requires, and declares every package it requires', () => {
    const manifest = JSON.parse(readFileSync(path.join(PACKAGE, 'package.json'), 'utf8'));
    const declared = new Set(Object.keys(manifest.dependencies));
    const files = jsFilesUnder(PACKAGE);
    assert.ok(files.includes(path.join(PACKAGE, manifest.main)), `main (${manifest.main}) is packed`);
    for (const file of [ 'app.js', 'agent.js', 'config/config.default.js', manifest.types ]) {
      assert.ok(existsSync(path.join(PACKAGE, file)), `${file} is packed`);
    }
    for (const file of files) {
      for (const [ , request ] of readFileSync(file, 'utf8').matchAll(/require\("([^"]+)"\)/g)) {
        const where = `${path.relative(PACKAGE, file)} requires ${request}`;
        if (request.startsWith('.')) {
          const target = path.resolve(path.dirname(file), request);
          assert.ok(existsSync(`${target}.js`) || existsSync(path.join(target, 'index.js')), `${where}, which is not packed`);
        } else if (request.startsWith('node:') || builtinModules.includes(request)) {
          continue;
        } else {
          assert.ok(declared.has(request), `${where}, which is not in its dependencies`);
        }
      }
    }
  });

  it('types app.redlock, its config and errors for a TypeScript Egg app', function() {
    this.timeout(60000);
    try {
      execFileSync(path.join(ROOT, 'node_modules', '.bin', 'tsc'), [ '-p', APP ], { cwd: APP, stdio: 'pipe' });
    } catch (err) {
      assert.fail(`tsc found errors:\n${(err as { stdout?: Buffer }).stdout?.toString()}`);
    }
  });

  describe('booted by egg-mock from the app\'s node_modules', () => {
    let app: MockApplication;

    before(async () => {
      process.env.PACKED_APP_REDIS_PORT = String(server.port);
      // plugin: false, or egg-mock would load this checkout as the plugin under test
      app = mm.app({ baseDir: APP, plugin: false, cache: false } as any);
      await app.ready();
    });
    after(async () => {
      await app?.close();
      delete process.env.PACKED_APP_REDIS_PORT;
    });

    it('mounts app.redlock from the packed copy and locks on the configured Redis', async () => {
      assert.equal((app as any).plugins.redlock.path, PACKAGE);
      const view = inspect(server);
      try {
        const lock = await app.redlock.lock('order:42', 5000);
        assert.equal(await view.get('JOB_LOCKER_order:42'), lock.value);
        assert.equal(await lock.unlock(), true);
        assert.equal(await view.exists('JOB_LOCKER_order:42'), 0);
      } finally {
        view.disconnect();
      }
    });

    it('runs the app\'s scheduled job through its fleet lock', async () => {
      await app.runSchedule('report');
      assert.deepEqual((app as any).reports, [ 'JOB_LOCKER_report' ]);
    });
  });
});
