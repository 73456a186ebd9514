import type { NodeOutcome } from './errors';
import type { LockStore, WaitingAttempt } from './store';
import { holderOf } from './keys';
import { leaseEnd, quorum, steadyNow } from './timing';

/**
 * The Redlock algorithm over N logical nodes as plain functions: ask every node at once, count the
 * nodes that granted, and trust the result only with a quorum inside the lease's validity time.
 * With one node the quorum is that node, asked without the fan-out (askEveryNode).
 */

export interface QuorumResult {
  granted: boolean;
  /**
   * Acquire only: a fencing token per key, the highest any granting node issued. Two quorums share
   * a node, and every node's tokens follow server time, so a later holder gets a higher token as
   * long as the masters' clocks agree better than the time between the two acquisitions.
   */
  tokens?: number[];
  /** When the lease ends by this process's steady clock (drift already taken off; timing.ts#steadyNow). */
  expiration: number;
  outcomes: NodeOutcome[];
}

/**
 * Asks every node at once and settles once every node answered — or, with `early`, as soon as the
 * answers decide: a quorum has granted, or (after a short grace for the rest) so many refused that no
 * quorum can grant and too few can fail for it to count as unavailable (that needs every answer: a
 * slow node's may tip it). An acquisition, extension or release need not wait for the slowest master
 * (on a busy host that is most of the cost; a hung one would hold it for the command timeout, past a
 * short lease's validity, and a waiter's every attempt); its answer still lands, in order on its
 * connection, a moment later.
 */
function askEveryNode(stores: LockStore[], ask: (store: LockStore) => Promise<Omit<NodeOutcome, 'node'>>, early = false): Promise<NodeOutcome[]> {
  if (stores.length === 1) {
    const [ store ] = stores;
    return ask(store).then(outcome => [ answered(store, outcome) ], (err: Error) => [ failed(store, err) ]);
  }
  return new Promise(resolve => {
    const outcomes: NodeOutcome[] = stores.map(store => ({ node: store.node, status: 'error', error: 'no answer yet' }));
    const needed = quorum(stores.length);
    let answeredCount = 0;
    const spare = stores.length - needed; // how many nodes may fail or refuse
    let grants = 0;
    let failures = 0;
    let settled = false;
    let grace: ReturnType<typeof setTimeout> | undefined;
    const done = () => {
      settled = true;
      clearTimeout(grace);
      resolve(outcomes);
    };
    const settle = (i: number, outcome: NodeOutcome) => {
      if (settled) return; // the caller has its answer; a late one does not change it
      outcomes[i] = outcome;
      answeredCount++;
      if (outcome.status === 'granted') grants++;
      if (outcome.status === 'error') failures++;
      const unanswered = stores.length - answeredCount;
      // Refused for sure, and busy (not unavailable) whatever the unanswered nodes say or fail to.
      const refused = answeredCount - grants > spare && failures + unanswered <= spare;
      if ((early && grants === needed) || answeredCount === stores.length) done();
      // A healthy node answers within moments: waiting for it spares the undo it would need unanswered.
      else if (early && refused) grace ??= setTimeout(done, REFUSAL_GRACE_MS);
    };
    stores.forEach((store, i) => {
      ask(store).then(outcome => settle(i, answered(store, outcome)), (err: Error) => settle(i, failed(store, err)));
    });
  });
}

/** How long a refused attempt waits for the nodes that have not answered (see askEveryNode). */
const REFUSAL_GRACE_MS = 50;

/** A node's answer as its NodeOutcome. */
function answered(store: LockStore, outcome: Omit<NodeOutcome, 'node'>): NodeOutcome {
  return { node: store.node, ...outcome };
}

/** A node that failed or did not answer in time, as its NodeOutcome. */
function failed(store: LockStore, err: Error): NodeOutcome {
  return { node: store.node, status: 'error', error: err.message };
}

/** Whether a quorum of nodes granted the step (in time or not). */
export function quorumGranted(outcomes: NodeOutcome[]): boolean {
  return outcomes.filter(o => o.status === 'granted').length >= quorum(outcomes.length);
}

export async function acquireQuorum(stores: LockStore[], keys: string[], value: string, ttl: number, driftFactor: number,
  waiting?: WaitingAttempt): Promise<QuorumResult> {
  const startedAt = steadyNow();
  const tokens = keys.map(() => 0);
  const outcomes = await askEveryNode(stores, store => store.acquire(keys, value, ttl, waiting).then(reply => {
    if (reply.granted) {
      reply.tokens.forEach((token, i) => { tokens[i] = Math.max(tokens[i], token); });
      return { status: 'granted' };
    }
    const holder = reply.firstInLine ? `${holderOf(reply.holder)}, first in the fair queue` : holderOf(reply.holder);
    return { status: 'held', key: reply.key, holder, remainingMs: Math.max(0, reply.remainingMs) };
  }), true);
  const expiration = leaseEnd(startedAt, ttl, driftFactor);
  if (quorumGranted(outcomes) && expiration > steadyNow()) return { granted: true, expiration, outcomes, tokens: [ ...tokens ] };
  // A failed attempt may hold some nodes, or be about to (one that has not answered): undo it there,
  // owner-checked, at once — queued behind the attempt on that connection, and so ahead of the next
  // attempt of this call, which uses the same value (a later undo could delete what that one got).
  // Waited for only where the master granted: one that failed or has not answered may be hung, and
  // would hold every attempt up once more.
  const undone = stores.map((store, i) => outcomes[i].status !== 'held' && store.undo(keys, value).catch(() => undefined));
  await Promise.all(undone.filter((undo, i) => undo && outcomes[i].status === 'granted'));
  return { granted: false, expiration, outcomes };
}

export async function extendQuorum(stores: LockStore[], keys: string[], value: string, ttl: number, driftFactor: number): Promise<QuorumResult> {
  const startedAt = steadyNow();
  const outcomes = await askEveryNode(stores, async store => ({
    status: await store.extend(keys, value, ttl) ? 'granted' : 'held',
  }), true);
  const expiration = leaseEnd(startedAt, ttl, driftFactor);
  return { granted: quorumGranted(outcomes) && expiration > steadyNow(), expiration, outcomes };
}

/** `granted` when a quorum of nodes still held the lock and deleted it. */
export async function releaseQuorum(stores: LockStore[], keys: string[], value: string): Promise<QuorumResult> {
  const outcomes = await askEveryNode(stores, store => store.release(keys, value).then(released => ({
    status: released === keys.length ? 'granted' : 'held',
  })), true);
  return { granted: quorumGranted(outcomes), expiration: 0, outcomes };
}

/** Whether too few nodes answered for the outcome to mean anything (as opposed to "someone else holds it"). */
export function unreachable(outcomes: NodeOutcome[]): boolean {
  const failed = outcomes.filter(o => o.status === 'error').length;
  return failed > outcomes.length - quorum(outcomes.length);
}
