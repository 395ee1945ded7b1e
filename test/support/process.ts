import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

export interface ServerProcess {
  child: ChildProcess;
  /** Everything written to stdout so far. */
  output(): string;
  /** Resolves with the GraphQL URL once the server listens. */
  url: Promise<string>;
  /** Resolves with the exit code (or signal) when the process ends. */
  exited: Promise<number | string>;
}

/** Starts `src/main.ts` as `npm start` does, with `env` added to this process's environment. */
export function startServer(env: Record<string, string>): ServerProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    env: { ...process.env, PORT: '0', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const url = new Promise<string>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /running: (http:\/\/\S+\/graphql)/.exec(out);
      if (match?.[1]) resolve(match[1]);
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.on('exit', () => reject(new Error(`server exited before listening:\n${out}`)));
  });
  url.catch(() => {});
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? signal ?? -1));
  });
  return { child, output: () => out, url, exited };
}
