/** Renders the results as markdown: the same text goes to stdout and bench/results.md. */
import type { CommandCount } from './command-count';
import type { HandoffResult } from './handoff';
import type { ParallelResult } from './parallel';
import type { ScheduleOverheadResult } from './schedule-overhead';
import type { UncontendedResult } from './uncontended';
import type { FairnessResult } from './fairness';
import type { WaitingResult } from './waiting-commands';
import type { WakeBy } from '../lib/store';

/** A measurement, or why it could not be taken. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: string };

export interface LibraryResults {
  label: string;
  isFloor?: boolean;
  isReference?: boolean;
  isPlugin?: boolean;
  uncontended?: UncontendedResult;
  parallel?: Outcome<ParallelResult>;
  handoffOne?: Outcome<HandoffResult>;
  handoffMany?: Outcome<HandoffResult>;
  waiting?: Outcome<WaitingResult>;
}

export interface TopologyResults {
  label: string;
  /** Redis servers in the topology. */
  nodes: number;
  libraries: LibraryResults[];
  schedule?: Outcome<ScheduleOverheadResult>;
  /** This plugin with fair: true (one logical node only). */
  fairness?: Outcome<FairnessResult>;
}

/** This plugin's waiting on a Redis Cluster, with releases waking waiters one way (run.ts#benchCluster). */
export interface ClusterResults {
  wakeBy: WakeBy;
  handoffOne: Outcome<HandoffResult>;
  handoffMany: Outcome<HandoffResult>;
  waiting: Outcome<WaitingResult>;
}

export interface RunInfo {
  command: string;
  date: string;
  node: string;
  redis: string;
  machine: string;
  settings: string[];
  plan: {
    uncontendedOps: number;
    uncontendedWarmup: number;
    uncontendedBlocks: number;
    parallelClients: number;
    parallelSeconds: number;
    parallelRounds: number;
    handoffOneRounds: number;
    handoffWaiters: number;
    handoffManyRounds: number;
    /** Handoffs run (and not counted) before the measured ones, by the same clients. */
    handoffWarmup: number;
    waitingWaiters: number;
    waitingHoldSeconds: number;
    waitingReleases: number;
    scheduleCalls: number;
  };
}

export interface Targets {
  uncontendedVsFloor: number;
  handoffP50Ms: number;
  commandsPerWaiterPerRelease: number;
}

const int = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–');
const ms = (x: number) => (!Number.isFinite(x) ? '–' : x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0));
const dec = (x: number, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : '–');
const verdict = (ok: boolean) => (ok ? '✅ met' : '❌ not met');

function cell<T>(outcome: Outcome<T> | undefined, show: (value: T) => string): string {
  if (!outcome) return '–';
  if (!outcome.ok) return `error: ${outcome.error.replace(/\|/g, '/').slice(0, 80)}`;
  return show(outcome.value);
}

function table(head: string[], align: Array<'l' | 'r'>, rows: string[][]): string {
  const rule = align.map(a => (a === 'r' ? '---:' : '---'));
  return [ head, rule, ...rows ].map(cells => `| ${cells.join(' | ')} |`).join('\n');
}

function byLabel(topology: TopologyResults, label: string): LibraryResults | undefined {
  return topology.libraries.find(l => l.label === label);
}

export function renderReport(info: RunInfo, topologies: TopologyResults[], cluster: Outcome<ClusterResults[]>, targets: Targets, problems: string[]): string {
  const [ single, multi ] = topologies;
  const labels = single.libraries.map(l => l.label);
  const lockLabels = single.libraries.filter(l => !l.isReference).map(l => l.label);
  const { plan } = info;
  const out: string[] = [];

  out.push('# egg-distributed-lock benchmark', '');
  out.push(`- Command: \`${info.command}\``);
  out.push(`- Date: ${info.date}`);
  out.push(`- Node ${info.node}, Redis ${info.redis}, ${info.machine}`);
  for (const line of info.settings) out.push(`- ${line}`);
  out.push('');

  out.push(`## 1. Uncontended acquire + release (one client, sequential, ${plan.uncontendedOps} ops after ${plan.uncontendedWarmup} warm-up)`, '');
  out.push(table(
    [ 'Library', ...[ single, multi ].flatMap(t => [ `${t.label} ops/s`, '÷ floor', 'p50 µs', 'p99 µs' ]) ],
    [ 'l', ...[ single, multi ].flatMap(() => [ 'r', 'r', 'r', 'r' ] as const) ],
    labels.map(label => {
      const cells = [ single, multi ].flatMap(t => {
        const u = byLabel(t, label)?.uncontended;
        const floor = t.libraries.find(l => l.isFloor)?.uncontended;
        if (!u) return [ '–', '–', '–', '–' ];
        return [ int(u.opsPerSec), floor ? `${dec(u.opsPerSec / floor.opsPerSec, 2)}×` : '–', int(u.p50Us), int(u.p99Us) ];
      });
      return [ label, ...cells ];
    }),
  ), '');
  out.push('The **raw floor** row is not a lock: it is the two round trips any lock needs at least ' +
    '(`SET key val NX PX ttl`, then `DEL key`; on 3 masters each step goes to all 3 in parallel and is awaited). ' +
    'The *owner-checked floor* row is not a lock library either: the same `SET NX PX` with a random value, released ' +
    'by a one-line compare-and-delete script, the least a lock can do without ever deleting another holder\'s key ' +
    '(no fencing token, no waiting, no lease tracking). ' +
    `Contenders take turns in ${plan.uncontendedBlocks} blocks so that machine noise falls on all alike.`, '');
  out.push('CPU per acquire + release, in the same run (µs; steadier than time when the machine is noisy):', '');
  out.push(table(
    [ 'Library', ...[ single, multi ].flatMap(t => [ `${t.label} client CPU`, `${t.label} Redis CPU` ]) ],
    [ 'l', 'r', 'r', 'r', 'r' ],
    labels.map(label => [ label, ...[ single, multi ].flatMap(t => {
      const u = byLabel(t, label)?.uncontended;
      return u ? [ dec(u.clientCpuUs, 1), dec(u.serverCpuUs, 1) ] : [ '–', '–' ];
    }) ]),
  ), '');

  out.push(`## 2. ${plan.parallelClients} clients in parallel on distinct names (${plan.parallelSeconds} s per library, each client loops acquire + release)`, '');
  out.push(table(
    [ 'Library', `${single.label} ops/s`, `${multi.label} ops/s` ],
    [ 'l', 'r', 'r' ],
    lockLabels.map(label => [ label, ...[ single, multi ].map(t => cell(byLabel(t, label)?.parallel, p => (
      p.errors ? `${int(p.opsPerSec)} (${p.errors} errors: ${p.firstError})` : int(p.opsPerSec)))) ]),
  ), '');
  out.push(`The libraries take turns in ${plan.parallelRounds} rounds, after a warm-up round each.`, '');

  out.push('## 3. Handoff gap: holder calls release → a waiting client\'s acquire resolves (ms)', '');
  out.push(table(
    [ 'Library', 'Topology', '1 waiter p50', '1 waiter p99', `${plan.handoffWaiters} waiters p50`, `${plan.handoffWaiters} waiters p99`, 'holder\'s release call p50' ],
    [ 'l', 'l', 'r', 'r', 'r', 'r', 'r' ],
    lockLabels.flatMap(label => topologies.map(t => {
      const lib = byLabel(t, label)!;
      return [ label, t.label,
        cell(lib.handoffOne, h => ms(h.p50Ms)), cell(lib.handoffOne, h => ms(h.p99Ms)),
        cell(lib.handoffMany, h => ms(h.p50Ms)), cell(lib.handoffMany, h => ms(h.p99Ms)), cell(lib.handoffOne, h => ms(h.releaseP50Ms)) ];
    })),
  ), '');
  out.push(`Each library's clients first pass the lock down a chain of ${plan.handoffWarmup} handoffs that are not counted ` +
    '(its code optimised and its connections set up, as in a long-lived server; the uncontended and parallel rows warm up too). ' +
    `1 waiter: ${plan.handoffOneRounds} handoffs; the holder releases 50–350 ms after the waiter started, ` +
    'so a polling waiter is caught at a random point of its retry period. ' +
    `${plan.handoffWaiters} waiters: ${plan.handoffManyRounds} rounds of a chain of ${plan.handoffWaiters} handoffs ` +
    `(${plan.handoffManyRounds * plan.handoffWaiters} gaps); each new holder holds 5–20 ms, then releases. ` +
    'With so few samples, p99 is close to the worst gap seen. ' +
    '*Holder\'s release call*: how long the holder\'s own release took in the 1-waiter handoffs (median). A handoff ' +
    'contains it and at least one more round trip (the woken waiter\'s attempt), so it is the floor to read the gap ' +
    'against: on a VM that is slow to wake from idle, that one round trip after a quiet wait is most of the gap.', '');

  out.push(`## 4. Redis commands while ${plan.waitingWaiters} clients wait on a lock held ${plan.waitingHoldSeconds} s, then passed on ${plan.waitingReleases} times`, '');
  const both = (c: CommandCount, format: (x: number) => string) => `${format(c.sent)} / ${format(c.all)}`;
  out.push(table(
    [ 'Library', 'Topology', 'commands/s while waiting', 'commands/s, 2nd half of the hold', 'per waiter, to wait through the first release', 'per waiter per release, at the releases' ],
    [ 'l', 'l', 'r', 'r', 'r', 'r' ],
    lockLabels.flatMap(label => topologies.map(t => {
      const w = byLabel(t, label)!.waiting;
      return [ label, t.label,
        cell(w, v => both(v.perSec, int)), cell(w, v => both(v.steadyPerSec, int)),
        cell(w, v => both(v.perWaiterPerRelease, dec)), cell(w, v => both(v.atReleasePerWaiter, dec)) ];
    })),
  ), '');
  out.push('Each cell is **client-sent / all**, summed over every server of the topology (on 3 masters one attempt is one ' +
    'command per master). *all* = sum of `calls=` in `INFO commandstats`, which also counts the commands a Lua script runs ' +
    '(`redis.call`); *client-sent* = commands clients sent (round trips), from `MONITOR`, which tells script-internal ' +
    'commands apart. *Commands/s while waiting*: from the waiters\' start until just before the first release; ' +
    '*2nd half of the hold*: the same, once every waiter has set up its wait. ' +
    '*To wait through the first release*: everything from the waiters\' start until one of them holds the lock and the ' +
    'others are back to waiting (+50 ms), divided by the number of waiters. *At the releases*: from each release until ' +
    `the next holder has the lock (+50 ms), over ${plan.waitingReleases} releases (each new holder keeps the lock until ` +
    'counted, then releases), divided by the number of clients waiting at each release. For a polling library this last ' +
    'figure is low because its cost is in the waiting, not at the release. The waiting clients are the ones that ran ' +
    'the handoffs above, as in a long-lived process: this plugin\'s clients already listen on their wake channel, so ' +
    'a wait is one attempt; a fresh client\'s first wait adds a SUBSCRIBE and a second attempt.', '');

  if (topologies.some(t => t.schedule)) {
    out.push(`## 5. Per-fire overhead of a locked schedule (this plugin; ${plan.scheduleCalls} calls, mean)`, '');
    out.push(table(
      [ 'Topology', 'unlocked noop task µs/call', 'lockedTask-wrapped noop µs/call', 'overhead µs/call' ],
      [ 'l', 'r', 'r', 'r' ],
      topologies.map(t => [ t.label,
        cell(t.schedule, s => dec(s.unlockedUs, 2)), cell(t.schedule, s => int(s.lockedUs)),
        cell(t.schedule, s => int(s.lockedUs - s.unlockedUs)) ]),
    ), '');
    out.push('A schedule with no cron or interval has no fire window, so each fire takes the lock, runs the task, ' +
      'releases, and records the last run (`SET`).', '');
  }

  out.push(...renderCluster(cluster, plan), '');

  out.push(...renderTargets(topologies, targets, plan.waitingWaiters), '');

  if (problems.length) {
    out.push('## Problems seen during the run', '');
    const shown = problems.slice(0, 20);
    for (const p of shown) out.push(`- ${p}`);
    if (problems.length > shown.length) out.push(`- … and ${problems.length - shown.length} more`);
    out.push('');
  }
  return out.join('\n');
}

function renderCluster(cluster: Outcome<ClusterResults[]>, plan: RunInfo['plan']): string[] {
  const out = [ '## 6. This plugin on a Redis Cluster (3 masters, one logical node)', '' ];
  if (!cluster.ok) return [ ...out, `Not measured: ${cluster.error}` ];
  const how: Record<WakeBy, string> = {
    spublish: 'SPUBLISH to the first queued waiter (Redis 7)',
    broadcast: 'broadcast to every waiter (a Redis 6 Cluster)',
    publish: 'PUBLISH to the first queued waiter',
  };
  const both = (c: CommandCount) => `${dec(c.sent)} / ${dec(c.all)}`;
  out.push(table(
    [ 'A release wakes waiters by', '1 waiter p50 ms', '1 waiter p99 ms', `${plan.handoffWaiters} waiters p50 ms`, `${plan.handoffWaiters} waiters p99 ms`,
      'commands/s, 2nd half of the hold', 'per waiter per release, at the releases' ],
    [ 'l', 'r', 'r', 'r', 'r', 'r', 'r' ],
    cluster.value.map(c => [ how[c.wakeBy],
      cell(c.handoffOne, h => ms(h.p50Ms)), cell(c.handoffOne, h => ms(h.p99Ms)),
      cell(c.handoffMany, h => ms(h.p50Ms)), cell(c.handoffMany, h => ms(h.p99Ms)),
      cell(c.waiting, w => `${int(w.steadyPerSec.sent)} / ${int(w.steadyPerSec.all)}`), cell(c.waiting, w => both(w.atReleasePerWaiter)) ]),
  ), '');
  out.push('The same handoffs and counts as sections 3 and 4 (client-sent / all, summed over the Cluster\'s masters), ' +
    'for this plugin only. On a Cluster PUBLISH counts only the listeners on the node that ran it, so a release ' +
    'cannot tell a live waiter from a departed one by PUBLISH; the plugin hands over by SPUBLISH on a shard channel ' +
    'in the key\'s slot where the servers have it, and otherwise wakes every waiter of the key. The broadcast row ' +
    'is that fallback, forced on the same Redis 7 Cluster.');
  return out;
}

function renderTargets(topologies: TopologyResults[], targets: Targets, waiters: number): string[] {
  const rows: string[][] = [];
  const forPlugin = (t: TopologyResults) => t.libraries.find(l => l.isPlugin);
  const floorOf = (t: TopologyResults) => t.libraries.find(l => l.isFloor)?.uncontended;

  rows.push([ `uncontended ops/s ÷ raw floor ≥ ${targets.uncontendedVsFloor}×`, ...topologies.map(t => {
    const ours = forPlugin(t)?.uncontended;
    const floor = floorOf(t);
    if (!ours || !floor) return '–';
    const ratio = ours.opsPerSec / floor.opsPerSec;
    return `${ratio.toFixed(2)}× ${verdict(ratio >= targets.uncontendedVsFloor)}`;
  }) ]);
  for (const [ title, pick ] of [
    [ '1 waiter', (l: LibraryResults) => l.handoffOne ],
    [ 'chain of waiters', (l: LibraryResults) => l.handoffMany ],
  ] as const) {
    rows.push([ `handoff p50 ≤ ${targets.handoffP50Ms} ms, ${title}`, ...topologies.map(t => {
      const lib = forPlugin(t);
      return cell(lib && pick(lib), h => `${ms(h.p50Ms)} ms ${verdict(h.p50Ms <= targets.handoffP50Ms)}`);
    }) ]);
  }
  const perNode = (t: TopologyResults, x: number) => (t.nodes > 1 ? ` (${dec(x / t.nodes)} per node)` : '');
  for (const [ title, pick ] of [
    [ 'at the releases', (w: WaitingResult) => w.atReleasePerWaiter ],
    [ 'to wait through the first release', (w: WaitingResult) => w.perWaiterPerRelease ],
  ] as const) {
    // One attempt is one command on each master, so the target is read per Redis node.
    rows.push([ `client-sent commands per waiter per release per node ≤ ${targets.commandsPerWaiterPerRelease}, ${title}`, ...topologies.map(t => {
      const waiting = forPlugin(t)?.waiting;
      return cell(waiting, w => {
        const { sent, all } = pick(w);
        return `${dec(sent)}${perNode(t, sent)} ${verdict(sent / t.nodes <= targets.commandsPerWaiterPerRelease)} (all: ${dec(all)})`;
      });
    }) ]);
  }
  rows.push([ 'with fair: true, every waiter acquires, in arrival order', ...topologies.map(t => {
    if (!t.fairness) return 'n/a (fair needs one logical node)';
    return cell(t.fairness, f => `${f.acquired} of ${f.waiters}, ${f.inOrder ? 'in order' : `out of order: ${f.order.join(',')}`} ` +
      verdict(f.inOrder && f.acquired === f.waiters));
  }) ]);
  rows.push([ 'client-sent commands/s per waiter once waiting (2nd half of the hold)', ...topologies.map(t => {
    const waiting = forPlugin(t)?.waiting;
    return cell(waiting, w => dec(w.steadyPerSec.sent / waiters));
  }) ]);
  return [
    '## This plugin against the project\'s targets', '',
    table([ 'Target', ...topologies.map(t => t.label) ], [ 'l', ...topologies.map(() => 'r' as const) ], rows),
  ];
}
