import { format } from 'node:util';

/**
 * A logger for the lock clients under test: info is dropped (the plugin logs every scheduled fire,
 * which would drown the output and cost time in the measurement), warnings and errors are kept so
 * the report can say if anything went wrong.
 */
export class QuietLogger {
  readonly problems: string[] = [];
  info(): void {}
  warn(...args: unknown[]): void { this.problems.push(`WARN ${format(...args)}`); }
  error(...args: unknown[]): void { this.problems.push(`ERROR ${format(...args)}`); }
}
