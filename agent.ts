import type { Agent } from 'egg';
import { RedlockBoot } from './lib/plugin';

export default class AgentBoot extends RedlockBoot {
  constructor(agent: Agent) {
    super(agent, 'agent');
  }
}
