import { postGraphQL, openWsClient } from '../helpers/graphql-clients';
import { disposeTestServers, startTestServer } from '../helpers/test-server';

afterEach(disposeTestServers);

describe('parsed and validated documents', () => {
  it('reports the same validation error every time a bad document comes back, on both transports', async () => {
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
