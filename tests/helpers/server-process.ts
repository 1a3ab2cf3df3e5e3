import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { onDispose } from './test-server';

/** A Taskwire server running as a child process, for tests that kill it. */
export interface ServerProcess {
  child: ChildProcess;
  url: string;
  wsUrl: string;
  /** Every log line the process printed so far, parsed from JSON. */
  logs: Array<Record<string, unknown>>;
  /** Sends a signal and resolves with the exit code once the process has exited. */
  stop(signal: NodeJS.Signals): Promise<number | null>;
}

const ROOT = join(__dirname, '..', '..');

/** Starts `src/main.ts` under tsx with the given environment and waits until it listens. */
export async function startServerProcess(env: Record<string, string>): Promise<ServerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'main.ts')], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  onDispose(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  });
  const logs: Array<Record<string, unknown>> = [];
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => {
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        logs.push(entry);
        if (entry.msg === 'Taskwire is listening') resolve(String(entry.url));
      } catch {
        logs.push({ msg: line });
      }
    });
    child.once('exit', (code) =>
      reject(new Error(`Server exited with ${code} before listening:\n${stderr}`)),
    );
  });
  const stop = async (signal: NodeJS.Signals) => {
    const exited = once(child, 'exit');
    child.kill(signal);
    const [code] = (await exited) as [number | null];
    return code;
  };
  return { child, url, wsUrl: url.replace(/^http/, 'ws'), logs, stop };
}
