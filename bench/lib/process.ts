// Child processes of the bench: the Tripline server started as `npm start` starts it, and the
// baseline servers and loops under bench/baselines/. Every child runs in its own process group
// so it can be ended with everything it spawned (tsx's esbuild service included), and every
// group still alive when the bench exits — normally, on an error, or on Ctrl-C — is killed.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, where `npm start` runs. */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Core of the servers under test; the bench process (load, receivers, clients) takes the other. */
export const SERVER_CORE = '0';
export const LOAD_CORE = '1';
/** Every core of a pinned bench: for a child that should run where the scheduler puts it. */
export const ALL_CORES = `${SERVER_CORE},${LOAD_CORE}`;

export interface Pinning {
  pinned: boolean;
  /** Why the bench runs unpinned, when it does. */
  reason?: string;
}

let pinning: Pinning = { pinned: false, reason: 'not set up' };

/**
 * Pins this process (all its threads, with `taskset -a`) to the load core, so servers started
 * afterwards can have the server core to themselves. Runs unpinned, and says why, on a single
 * core or without `taskset`.
 */
export function pinLoadGenerator(): Pinning {
  if (availableParallelism() < 2) {
    pinning = { pinned: false, reason: 'only one core: server and load share it' };
  } else if (spawnSync('taskset', ['-V']).status !== 0) {
    pinning = { pinned: false, reason: 'taskset not found: processes run unpinned' };
  } else {
    const result = spawnSync('taskset', ['-a', '-p', '-c', LOAD_CORE, String(process.pid)]);
    pinning =
      result.status === 0
        ? { pinned: true }
        : { pinned: false, reason: `taskset failed: ${result.stderr.toString().trim()}` };
  }
  return pinning;
}

/** Whether children are pinned: what {@link pinLoadGenerator} found. */
export const isPinned = (): boolean => pinning.pinned;

/**
 * Runs `start` with this process let onto every core, then pins it back to the load core, so
 * processes it starts meanwhile (a database server forking its backends, say) inherit no pin.
 */
export async function unpinnedWhile<T>(start: () => Promise<T>): Promise<T> {
  if (!pinning.pinned) return start();
  spawnSync('taskset', ['-a', '-p', '-c', ALL_CORES, String(process.pid)]);
  try {
    return await start();
  } finally {
    spawnSync('taskset', ['-a', '-p', '-c', LOAD_CORE, String(process.pid)]);
  }
}

const children = new Set<ChildProcess>();

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

/** Kills every child group still running; synchronous, so it also works in an `exit` handler. */
export function killAllChildren(): void {
  for (const child of children) killGroup(child, 'SIGKILL');
  children.clear();
}

const tempDirs = new Set<string>();

/** A new directory under the system's temp dir, deleted by {@link removeTempDirs}. */
export function makeTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

/**
 * Deletes every directory {@link makeTempDir} made but those in `keep`; synchronous, for the
 * `exit` handler too.
 */
export function removeTempDirs(keep: readonly string[] = []): void {
  for (const dir of tempDirs) {
    if (keep.includes(dir)) continue;
    rmSync(dir, { recursive: true, force: true });
    tempDirs.delete(dir);
  }
}

process.on('exit', () => {
  killAllChildren();
  removeTempDirs();
});

export interface NodeChild {
  child: ChildProcess;
  pid: number;
  /** The last 64 KiB the child wrote to stdout and stderr. */
  output(): string;
  /** Resolves with the first match of `pattern` in the output; rejects if the child exits first. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** Resolves with the exit code or signal. */
  exited: Promise<number | string>;
  /**
   * SIGTERM, then SIGKILL to the whole group after `graceMs`; resolves once the child is gone.
   * A server stopped this way exits through its own shutdown path, which writes `--cpu-prof`.
   */
  stop(graceMs?: number): Promise<void>;
}

export interface SpawnOptions {
  env?: Record<string, string>;
  /** Extra flags for node before the script, e.g. `--cpu-prof`. */
  nodeFlags?: string[];
  args?: string[];
  /** The cores (`taskset -c` list) when the bench is pinned; the server core unless given. */
  cores?: string;
}

/**
 * Runs `node [flags] --import tsx <script>` from the repository root, pinned to the server core
 * (or `options.cores`) when the bench is pinned, in a new process group that the bench kills on exit.
 */
export function spawnNodeScript(script: string, options: SpawnOptions = {}): NodeChild {
  const nodeArgs = [
    ...(options.nodeFlags ?? []),
    '--import',
    'tsx',
    script,
    ...(options.args ?? []),
  ];
  const [command, args] = pinning.pinned
    ? ['taskset', ['-c', options.cores ?? SERVER_CORE, process.execPath, ...nodeArgs]]
    : [process.execPath, nodeArgs];
  const child = spawn(command as string, args as string[], {
    cwd: ROOT,
    env: { ...process.env, ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
  });
  children.add(child);
  let out = '';
  const waiters = new Set<() => void>();
  const append = (chunk: Buffer) => {
    out = (out + chunk.toString()).slice(-65_536);
    for (const waiter of waiters) waiter();
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => {
      children.delete(child);
      // tsx's esbuild service or anything else left in the group goes with the child.
      killGroup(child, 'SIGKILL');
      resolve(code ?? signal ?? -1);
      for (const waiter of waiters) waiter();
    });
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${script}`);
  return {
    child,
    pid,
    output: () => out,
    exited,
    waitFor(pattern, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`${script}: no ${pattern} within ${timeoutMs} ms:\n${out}`));
        }, timeoutMs);
        const check = () => {
          const match = pattern.exec(out);
          if (match) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(match);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            waiters.delete(check);
            clearTimeout(timer);
            reject(new Error(`${script} exited before printing ${pattern}:\n${out}`));
          }
        };
        waiters.add(check);
        check();
      });
    },
    async stop(graceMs = 5_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => killGroup(child, 'SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    const result = spawnSync('getconf', ['CLK_TCK']);
    const value = Number(result.stdout?.toString().trim());
    ticksPerSecond = result.status === 0 && value > 0 ? value : 100;
  }
  return ticksPerSecond;
}

/**
 * CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat; undefined where
 * /proc is not available. Resolution is one clock tick (10 ms on Linux), so measure windows of
 * seconds, not milliseconds.
 */
export function cpuSeconds(pid: number): number | undefined {
  const file = `/proc/${pid}/stat`;
  if (!existsSync(file)) return undefined;
  const stat = readFileSync(file, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces: state is
  // field 3, utime field 14, stime field 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicks();
}

/** Resident set size of a process in bytes, from /proc/<pid>/status; undefined without /proc. */
export function rssBytes(pid: number): number | undefined {
  const file = `/proc/${pid}/status`;
  if (!existsSync(file)) return undefined;
  const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(file, 'utf8'));
  return match ? Number(match[1]) * 1024 : undefined;
}

/** The `.cpuprofile` files in `dir`, as full paths. */
export function cpuProfilesIn(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((name) => name.endsWith('.cpuprofile'))
    .map((name) => join(dir, name));
}

/**
 * Resolves once process `pid` has used under `busyShare` of a core for two consecutive 100 ms
 * windows, or after `maxMs`. Closed-loop load leaves requests in flight when it stops; waiting
 * for them keeps one round's tail out of the next round's window.
 */
export async function waitIdle(pid: number, maxMs = 30_000, busyShare = 0.1): Promise<void> {
  const begin = Date.now();
  let quiet = 0;
  let before = cpuSeconds(pid);
  if (before === undefined) return;
  while (quiet < 2 && Date.now() - begin < maxMs) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const now = cpuSeconds(pid);
    if (now === undefined) return;
    quiet = now - before < 0.1 * busyShare ? quiet + 1 : 0;
    before = now;
  }
}
