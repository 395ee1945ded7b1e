import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

export interface ServerProcess {
  /** The process started: node running the server, or npm. */
  child: ChildProcess;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Everything written to stdout so far: JSON log lines. */
  stdout(): string;
  /** Everything written to stderr so far: the banner, and what goes wrong before logging starts. */
  stderr(): string;
  /** Resolves with the GraphQL URL once the server listens. */
  url: Promise<string>;
  /** Resolves with the exit code (or signal) when `child` ends. */
  exited: Promise<number | string>;
  /** Resolves when every process holding the output has ended (the server too, under npm). */
  outputClosed: Promise<void>;
  /** The server's own process id, from its log (needs `LOG_LEVEL` info or lower), once it listens. */
  serverPid(): number | undefined;
  /**
   * Resolves with {@link serverPid} once its log line has arrived: the banner (stderr) that
   * resolves `url` can come before it (stdout), so a test that needs the pid waits for this.
   */
  listeningPid: Promise<number>;
}

export interface StartOptions {
  /**
   * `node` (default) starts `node --import tsx src/main.ts`; `npm` starts `npm start`, as a
   * supervisor or a container runtime would, so `child` is the npm process.
   */
  via?: 'node' | 'npm';
}

/** Starts the server with `env` added to this process's environment. */
export function startServer(
  env: Record<string, string>,
  options: StartOptions = {},
): ServerProcess {
  const [command, args] =
    options.via === 'npm'
      ? ['npm', ['start']]
      : [process.execPath, ['--import', 'tsx', 'src/main.ts']];
  const child = spawn(command, args, {
    cwd: root,
    env: { ...process.env, PORT: '0', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let stdout = '';
  let stderr = '';
  const url = new Promise<string>((resolve, reject) => {
    // The banner goes to stderr (stdout carries JSON lines only).
    const read = (chunk: Buffer) => {
      out += chunk.toString();
      const match = /running: (http:\/\/\S+\/graphql)/.exec(out);
      if (match?.[1]) resolve(match[1]);
    };
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      read(chunk);
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      read(chunk);
    });
    child.on('exit', () => reject(new Error(`server exited before listening:\n${out}`)));
  });
  url.catch(() => {});
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? signal ?? -1));
  });
  const outputClosed = new Promise<void>((resolve) => child.stdout?.on('close', resolve));
  const serverPid = () => {
    const line = out.split('\n').find((l) => l.includes('"msg":"Tripline is listening"'));
    return line ? (JSON.parse(line) as { pid: number }).pid : undefined;
  };
  const listeningPid = new Promise<number>((resolve, reject) => {
    const check = () => {
      const pid = serverPid();
      if (pid !== undefined) resolve(pid);
    };
    child.stdout?.on('data', check);
    child.on('exit', () => {
      check();
      reject(new Error(`no "Tripline is listening" line before the process exited:\n${out}`));
    });
  });
  listeningPid.catch(() => {});
  return {
    child,
    output: () => out,
    stdout: () => stdout,
    stderr: () => stderr,
    url,
    exited,
    outputClosed,
    serverPid,
    listeningPid,
  };
}

/**
 * Whether process `pid` is still running. An exited process that nobody has reaped yet (a
 * zombie, as an orphan can be for a while) is not running.
 */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

/** Kills `server` and, when npm started it, the server process too, so no test leaves one behind. */
export function killServer(server: ServerProcess): void {
  const pid = server.serverPid();
  server.child.kill('SIGKILL');
  if (pid !== undefined && isRunning(pid)) process.kill(pid, 'SIGKILL');
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `tripline <args>` as the package's `bin` declares it, with `env` added to this process's
 * environment minus any `TRIPLINE_*` setting of its own, and resolves once it has exited.
 */
export function runCli(args: readonly string[], env: Record<string, string>): Promise<CliResult> {
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith('TRIPLINE_')),
  );
  const child = spawn(process.execPath, ['bin/tripline.js', ...args], {
    cwd: root,
    env: { ...base, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return new Promise((resolve) => {
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
