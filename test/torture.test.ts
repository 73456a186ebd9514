import assert from 'node:assert/strict';
import { formatResult, torture } from '../torture/run';

// The short mode of `npm run torture`: the same fuzz and faults, for 15 s.
describe('torture (short mode)', function() {
  this.timeout(120000);

  it('never loses an update of the shared counter while faults are injected', async () => {
    const result = await torture({ seconds: 15 });
    console.log(formatResult(result));
    assert.ok(result.done > 100, `only ${result.done} increments done`);
    for (const [ fault, count ] of Object.entries(result.faults)) assert.ok(count > 0, `fault not injected: ${fault}`);
    assert.equal(result.counter, result.done, 'every increment reported done is in the counter, and no other');
    assert.equal(result.violations, 0);
  });
});
