/**
 * Everything the bench starts (lock clients, Redis connections, Redis servers), so that all of it
 * is stopped at the end, after an error, or on Ctrl-C, and `npm run bench` exits by itself.
 */
export interface Closable {
  close(): Promise<void>;
}

/** A close that hangs (a node that stopped answering) must not keep the bench from exiting. */
const CLOSE_TIMEOUT = 3000;

function closeBounded(resource: Closable): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>(resolve => { timer = setTimeout(resolve, CLOSE_TIMEOUT); });
  return Promise.race([ resource.close().catch(() => undefined), timeout ]).finally(() => clearTimeout(timer));
}

export class Resources {
  private readonly open = new Set<Closable>();
  /** Closed last: the servers, once every client of them is gone. */
  private readonly finally: Closable[] = [];

  /** Tracks a resource until `close(resource)` or `closeAll()`. */
  track<T extends Closable>(resource: T): T {
    this.open.add(resource);
    return resource;
  }

  /** Tracks a resource that must outlive every other one (a server). */
  trackLast<T extends Closable>(resource: T): T {
    this.finally.push(resource);
    return resource;
  }

  async close(...resources: Closable[]): Promise<void> {
    await Promise.all(resources.map(resource => {
      this.open.delete(resource);
      return closeBounded(resource);
    }));
  }

  async closeAll(): Promise<void> {
    await this.close(...this.open);
    await Promise.all(this.finally.splice(0).map(closeBounded));
  }
}
