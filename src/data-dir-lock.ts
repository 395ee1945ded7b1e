import { linkSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

/**
 * The lock file of a data directory. The server holds it while it runs, and so do the commands
 * that need the directory to themselves (`tripline migrate`, `tripline rotate-master-key`).
 */
export const LOCK_FILE_NAME = 'tripline.lock';

/** What a lock file says about the process holding the data directory. */
export interface LockHolder {
  pid: number;
  /** `server`, or the command holding it, such as `tripline migrate`. */
  holder: string;
  /** The machine the process runs on: a pid means nothing on another one. */
  host: string;
  /** When it took the lock, as an ISO date. */
  since: string;
}

/** The data directory is held by a live process, or its lock file cannot be read. Nothing was changed. */
export class DataDirLockedError extends Error {
  constructor(
    message: string,
    readonly file: string,
    /** The live holder; undefined when the lock file is unreadable. */
    readonly holder: LockHolder | undefined,
  ) {
    super(message);
    this.name = 'DataDirLockedError';
  }
}

export interface DataDirLock {
  file: string;
  /** The holder of a stale lock this one replaced: a process that died without releasing it. */
  takenOverFrom?: LockHolder;
  /** Removes the lock file if it is still this lock's. Safe to call more than once. */
  release(): void;
}

/** Whether `pid` runs on this machine. A zombie (exited, not yet reaped) does not. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: it exists, under another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    return !/^\d+ \(.*\) Z /s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

function parseHolder(text: string): LockHolder | undefined {
  try {
    const value = JSON.parse(text) as Partial<LockHolder>;
    if (
      Number.isInteger(value.pid) &&
      typeof value.holder === 'string' &&
      typeof value.host === 'string' &&
      typeof value.since === 'string'
    ) {
      return value as LockHolder;
    }
  } catch {
    // Reported below as unreadable.
  }
  return undefined;
}

/** How a message names the holder: `a Tripline server (pid 123, since …)`. */
export function describeHolder(holder: LockHolder): string {
  const who = holder.holder === 'server' ? 'a Tripline server' : `\`${holder.holder}\``;
  const where = holder.host === hostname() ? '' : ` on host ${holder.host}`;
  return `${who} (pid ${holder.pid}${where}, since ${holder.since})`;
}

type Reading =
  | { state: 'free' }
  | { state: 'held'; holder: LockHolder; text: string }
  | { state: 'stale'; holder: LockHolder; text: string }
  | { state: 'unreadable'; text: string };

function read(file: string): Reading {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { state: 'free' };
    throw error;
  }
  const holder = parseHolder(text);
  if (!holder) return { state: 'unreadable', text };
  // Another machine's pid cannot be checked from here (a data directory on shared storage).
  const live = holder.host !== hostname() || isAlive(holder.pid);
  return { state: live ? 'held' : 'stale', holder, text };
}

/**
 * The live holder of `dataDir`'s lock, or undefined when nobody holds it (no lock file, or a stale
 * one). Throws DataDirLockedError when the lock file cannot be read as a lock.
 */
export function lockHolder(dataDir: string): LockHolder | undefined {
  const file = join(dataDir, LOCK_FILE_NAME);
  const reading = read(file);
  if (reading.state === 'unreadable') throw unreadable(file);
  return reading.state === 'held' ? reading.holder : undefined;
}

function unreadable(file: string): DataDirLockedError {
  return new DataDirLockedError(
    `The lock file ${file} does not say which process holds the data directory. If no Tripline server or command is using the directory, delete the file and try again.`,
    file,
    undefined,
  );
}

function held(dataDir: string, file: string, holder: LockHolder): DataDirLockedError {
  const wait =
    holder.holder === 'server'
      ? 'Stop the server (SIGTERM, or Ctrl-C where it runs) and try again.'
      : 'Wait for it to finish and try again.';
  const unsure =
    holder.host === hostname()
      ? `If pid ${holder.pid} is not Tripline (the number was reused after a crash), delete ${file}.`
      : `If no Tripline process on ${holder.host} uses this directory any more, delete ${file}.`;
  return new DataDirLockedError(
    `The data directory ${dataDir} is in use by ${describeHolder(holder)}. ${wait} ${unsure}`,
    file,
    holder,
  );
}

/**
 * Takes the lock of `dataDir` (which must exist) for this process, as `holder` (`server`, or the
 * command). The lock file is created exclusively, so of two processes starting at once one wins.
 * A lock left by a process that is no longer running on this machine (killed, crashed) is taken
 * over. Throws DataDirLockedError, changing nothing, when a live process holds it or the lock
 * file cannot be read.
 */
export function lockDataDir(dataDir: string, holder: string, now: Date = new Date()): DataDirLock {
  const file = join(dataDir, LOCK_FILE_NAME);
  const mine: LockHolder = { pid: process.pid, holder, host: hostname(), since: now.toISOString() };
  const text = `${JSON.stringify(mine)}\n`;
  let takenOverFrom: LockHolder | undefined;
  // Each round either creates the lock, refuses, or removes a stale lock and tries again. Only
  // contending processes can make a round end without a result, so a few rounds suffice.
  for (let round = 0; round < 5; round += 1) {
    try {
      writeFileSync(file, text, { flag: 'wx', mode: 0o600 });
      return {
        file,
        ...(takenOverFrom ? { takenOverFrom } : {}),
        release: () => {
          try {
            if (readFileSync(file, 'utf8') === text) unlinkSync(file);
          } catch {
            // Already gone.
          }
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const reading = read(file);
    if (reading.state === 'unreadable') throw unreadable(file);
    if (reading.state === 'held') throw held(dataDir, file, reading.holder);
    if (reading.state === 'stale' && removeStale(file, reading.text)) {
      takenOverFrom = reading.holder;
    }
  }
  throw new DataDirLockedError(
    `Could not take the lock ${file}: other processes keep taking it. Try again.`,
    file,
    undefined,
  );
}

/**
 * Removes the stale lock whose contents are `staleText`. Deleting by name could delete a fresh
 * lock another process made after we read the stale one; a rename is atomic, so the lock is moved
 * aside first and deleted only if it is still the stale one, else put back. Returns whether the
 * stale lock was removed.
 */
function removeStale(file: string, staleText: string): boolean {
  const aside = `${file}.stale-${process.pid}`;
  try {
    renameSync(file, aside);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
  const moved = readFileSync(aside, 'utf8');
  if (moved !== staleText) {
    try {
      linkSync(aside, file);
    } catch {
      // A third process has made a lock meanwhile; it holds the directory now.
    }
  }
  unlinkSync(aside);
  return moved === staleText;
}
