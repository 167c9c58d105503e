// Quickstart, offline: a durable SQLite session under the Agents SDK's run(), with a tiny
// scripted model instead of an API call. Run it twice: the conversation continues.
//
//   cd crates/openai-agents-session-node && npm ci && npx napi build --platform && node examples/quickstart.mjs
import { Agent, Usage, run, setTracingDisabled } from '@openai/agents';
import { SQLiteSession } from 'openai-agents-session';

setTracingDisabled(true);

/** An offline model: it answers with how many messages of the conversation it was sent. */
const model = {
  async getResponse(request) {
    const seen = Array.isArray(request.input) ? request.input.length : 1;
    const text = `I have seen ${seen} item(s) of this conversation.`;
    return {
      usage: new Usage(),
      output: [{ type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text }] }],
    };
  },
  async *getStreamedResponse() {
    throw new Error('not used here');
  },
};

const agent = new Agent({ name: 'assistant', instructions: 'Be brief.', model });
const session = new SQLiteSession('quickstart', { path: 'quickstart.db' });

const result = await run(agent, 'Hello!', { session });
console.log(result.finalOutput);
console.log(`stored items: ${(await session.getItems()).length}`);

// A safe rewind: replace the last exchange only if it is still what we read.
const [question, answer] = await session.getItems(2);
await session.applyHistoryTransaction({
  operationId: `rewind-${Date.now()}`,
  transaction: { type: 'replace_suffix', expectedSuffix: [question, answer], replacement: [question] },
});
console.log(`after the rewind: ${(await session.getItems()).length} items`);
