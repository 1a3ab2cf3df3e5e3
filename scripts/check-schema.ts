import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { generate } from '@graphql-codegen/cli';
import config from '../codegen';

/**
 * Fails when `schema.graphql` or the example client's generated documents no longer match what
 * `npm run codegen` would write from the current code.
 */
async function main(): Promise<void> {
  const root = join(__dirname, '..');
  const outputs = (await generate({ ...config, silent: true, cwd: root }, false)) as Array<{
    filename: string;
    content: string;
  }>;
  const stale = outputs.filter((output) => {
    const path = join(root, output.filename);
    if (!existsSync(path)) return true;
    return readFileSync(path, 'utf8').trim() !== output.content.trim();
  });
  if (stale.length > 0) {
    console.error(`Generated files are out of date: ${stale.map((o) => o.filename).join(', ')}`);
    console.error('Run `npm run codegen` and commit the result.');
    process.exit(1);
  }
  console.log(`Generated files match the code (${outputs.length} checked).`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
