// The real run() of @openai/agents with a scripted offline model (a Model implementation
// returning canned responses, with a function tool), multi-turn, on every backend: the model
// inputs equal those the SDK's own MemorySession produces, and so does the stored history;
// a run stopped by an output guardrail leaves the history the SDK intends; streamed runs too.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Agent, MemorySession, OutputGuardrailTripwireTriggered, Usage, run, setTracingDisabled, tool } from '@openai/agents';
import { backends, uniqueId } from './helpers.mjs';

setTracingDisabled(true);

/**
 * A scripted model: a user message gets a call of the `lookup` tool; the tool's result gets an
 * assistant message quoting it. Ids count per model, so two runs of the same script match.
 * Every request's input is recorded.
 */
class ScriptedModel {
  constructor() {
    this.inputs = [];
    this.n = 0;
  }

  respond(request) {
    const input = typeof request.input === 'string' ? [{ role: 'user', content: request.input }] : request.input;
    this.inputs.push(structuredClone(input));
    this.n += 1;
    const last = input[input.length - 1];
    let output;
    if (last && last.type === 'function_call_result') {
      const text = typeof last.output === 'string' ? last.output : JSON.stringify(last.output);
      output = [{ type: 'message', id: `msg_${this.n}`, role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: `answer: ${text}` }] }];
    } else {
      const q = last && typeof last.content === 'string' ? last.content : 'question';
      output = [{ type: 'function_call', id: `fc_${this.n}`, callId: `call_${this.n}`, name: 'lookup', arguments: JSON.stringify({ q }), status: 'completed' }];
    }
    return { usage: new Usage({ requests: 1, inputTokens: 1, outputTokens: 1, totalTokens: 2 }), output, responseId: `resp_${this.n}` };
  }

  async getResponse(request) {
    return this.respond(request);
  }

  async *getStreamedResponse(request) {
    const response = this.respond(request);
    yield { type: 'response_started' };
    for (const item of response.output) {
      if (item.type === 'message') yield { type: 'output_text_delta', delta: item.content[0].text };
    }
    yield {
      type: 'response_done',
      response: { id: response.responseId, usage: { requests: 1, inputTokens: 1, outputTokens: 1, totalTokens: 2 }, output: response.output },
    };
  }
}

const lookup = tool({
  name: 'lookup',
  description: 'Looks a word up.',
  parameters: { type: 'object', properties: { q: { type: 'string' } }, required: ['q'], additionalProperties: false },
  strict: true,
  execute: async ({ q }) => `definition of ${q}`,
});

function agentWith(model, extra = {}) {
  return new Agent({ name: 'assistant', instructions: 'Answer with the lookup tool.', model, tools: [lookup], ...extra });
}

const TURNS = ['What is a session?', 'And a lease?', 'Thanks!'];

/** Runs the turns on `session`; returns the model's recorded inputs and the final outputs. */
async function converse(session, { stream = false } = {}) {
  const model = new ScriptedModel();
  const agent = agentWith(model);
  const outputs = [];
  for (const turn of TURNS) {
    if (stream) {
      const result = await run(agent, turn, { session, stream: true });
      let text = '';
      for await (const chunk of result.toTextStream()) text += chunk;
      await result.completed;
      outputs.push([result.finalOutput, text]);
    } else {
      const result = await run(agent, turn, { session });
      outputs.push(result.finalOutput);
    }
  }
  return { inputs: model.inputs, outputs };
}

for (const backend of backends()) {
  describe(backend.name, { skip: backend.skip }, () => {
    test('multi-turn run(): model inputs and history equal the MemorySession run', async () => {
      const reference = new MemorySession({ sessionId: 'ref' });
      const expected = await converse(reference);
      const session = await backend.make(uniqueId('run'));
      const got = await converse(session);
      assert.equal(got.inputs.length, TURNS.length * 2);
      assert.deepEqual(got.outputs, expected.outputs);
      assert.deepEqual(got.inputs, expected.inputs);
      // the third turn's first request carries the whole conversation so far
      assert.ok(got.inputs[4].length > 8, JSON.stringify(got.inputs[4]));
      assert.deepEqual(await session.getItems(), await reference.getItems());
    });

    test('streamed runs: the same inputs and history as MemorySession streamed', async () => {
      const reference = new MemorySession({ sessionId: 'ref-stream' });
      const expected = await converse(reference, { stream: true });
      const session = await backend.make(uniqueId('stream'));
      const got = await converse(session, { stream: true });
      assert.deepEqual(got.outputs, expected.outputs);
      assert.match(got.outputs[0][1], /answer: .*definition of What is a session/);
      assert.deepEqual(got.inputs, expected.inputs);
      assert.deepEqual(await session.getItems(), await reference.getItems());
    });

    test('a run stopped by an output guardrail leaves the history the SDK intends', async () => {
      const blocked = async (session) => {
        const ok = agentWith(new ScriptedModel());
        await run(ok, TURNS[0], { session });
        const model = new ScriptedModel();
        const guarded = agentWith(model, {
          outputGuardrails: [{ name: 'refuse', execute: async () => ({ tripwireTriggered: true, outputInfo: { why: 'test' } }) }],
        });
        await assert.rejects(run(guarded, TURNS[1], { session }), OutputGuardrailTripwireTriggered);
        return session.getItems();
      };
      const expected = await blocked(new MemorySession({ sessionId: 'ref-guard' }));
      const session = await backend.make(uniqueId('guard'));
      const got = await blocked(session);
      assert.deepEqual(got, expected);
      assert.ok(got.length >= 4, JSON.stringify(got));
    });
  });
}
