import { postGraphQL, openWsClient } from '../helpers/graphql-clients';
import { disposeTestServers, startTestServer } from '../helpers/test-server';

afterEach(disposeTestServers);

describe('parsed and validated documents', () => {
  it('repeats validation errors on both transports', async () => {
    const server = await startTestServer();
    const query = '{ task(id: "x") { nope } }';
    for (let round = 0; round < 3; round += 1) {
      const response = await postGraphQL(server.url, query);
      expect(response.errors?.[0]).toMatchObject({
        message: 'Cannot query field "nope" on type "Task".',
        extensions: { code: 'GRAPHQL_VALIDATION_FAILED' },
      });
    }
    const client = openWsClient(server.wsUrl);
    try {
      for (let round = 0; round < 2; round += 1) {
        const error = await new Promise<unknown>((resolve) => {
          client.subscribe(
            { query },
            { next: () => undefined, error: resolve, complete: () => resolve(undefined) },
          );
        });
        expect(error).toEqual([
          expect.objectContaining({ message: 'Cannot query field "nope" on type "Task".' }),
        ]);
      }
    } finally {
      await client.dispose();
    }
  });

  it('answers a valid document the same from the cache as the first time', async () => {
    const server = await startTestServer();
    const first = await postGraphQL(server.url, '{ metrics { queue { capacity } } }');
    const second = await postGraphQL(server.url, '{ metrics { queue { capacity } } }');
    expect(first.errors).toBeUndefined();
    expect(second).toEqual(first);
  });
});

describe('error replies', () => {
  it('stay small when the request was large', async () => {
    const server = await startTestServer();
    const body = `{"query": "${'x'.repeat(1_500_000)}`;
    const malformed = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    const text = await malformed.text();
    expect(malformed.status).toBe(400);
    expect(text.length).toBeLessThan(5_000);
    expect(JSON.parse(text)).toMatchObject({
      errors: [{ message: 'POST body sent invalid JSON.', extensions: { code: 'BAD_REQUEST' } }],
    });

    const longId = 'y'.repeat(100_000);
    const cancel = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        query: 'mutation ($id: ID!) { cancelTask(id: $id) { id } }',
        variables: { id: longId },
      }),
    });
    const cancelText = await cancel.text();
    expect(cancelText.length).toBeLessThan(1_000);
    expect(JSON.parse(cancelText)).toMatchObject({
      errors: [{ extensions: { code: 'NOT_FOUND' } }],
    });
  });
});
