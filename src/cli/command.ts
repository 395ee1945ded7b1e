import { existsSync, writeSync } from 'node:fs';
import type { ParseArgsConfig } from 'node:util';
import { type Config, ConfigError, loadConfig } from '../config.js';
import {
  type DataDirLock,
  DataDirLockedError,
  describeHolder,
  lockDataDir,
} from '../data-dir-lock.js';

/**
 * An expected failure of a command: printed as its message alone on stderr, and the process
 * exits with `exitCode` (1 when refused or failed, 2 for bad arguments or configuration).
 */
export class CommandError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CommandError';
  }
}

export type OptionValues = Record<string, string | boolean | undefined>;

/** One `tripline` subcommand. */
export interface Command {
  name: string;
  /** One line for `tripline --help`. */
  summary: string;
  /** The text of `tripline <name> --help`. */
  usage: string;
  /** Its options for node:util parseArgs; `--help` is added to every command. */
  options: NonNullable<ParseArgsConfig['options']>;
  /**
   * Does the work. Commands import what they need for it here, not at the top of their file, so
   * that `--help` and `check-config` do not load the database layer and the services.
   */
  run(values: OptionValues): void | Promise<void>;
}

/**
 * Writes to stdout synchronously: a key printed once must be on the terminal (or in the pipe)
 * before the command goes on to make it the only one that works.
 */
export const out = (text: string): void => {
  writeSync(1, text);
};

export const err = (text: string): void => {
  writeSync(2, text);
};

/** What every command says about its environment, at the end of its help. */
export const ENVIRONMENT_HELP = `Environment: the server's own (TRIPLINE_DATA_DIR, TRIPLINE_DATABASE_URL,
TRIPLINE_ENCRYPTION_KEY or TRIPLINE_ENCRYPTION_KEY_FILE, …; see Configuration in the
README), so that the command works on the same database and key as the server.`;

/** The server's configuration from the environment; a CommandError (exit 2) listing every problem. */
export function readConfig(env: NodeJS.ProcessEnv = process.env): Config {
  try {
    return loadConfig(env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    throw new CommandError(
      `${error.message}\nSet these variables as the server has them; \`tripline check-config\` checks them.`,
      2,
    );
  }
}

/**
 * Throws a CommandError unless the server's SQLite database exists in the configured data
 * directory. A PostgreSQL database (TRIPLINE_DATABASE_URL) is checked when it is opened.
 */
export function requireDatabase(config: Config): void {
  if (config.databaseUrl === undefined && !existsSync(config.databaseFile)) {
    throw new CommandError(
      `No database at ${config.databaseFile}. Set TRIPLINE_DATA_DIR to the server's data directory (it holds tripline.db).`,
    );
  }
}

/**
 * Takes the data directory's lock for `command`, so that no server starts on it, nor another
 * command that needs it alone, until the lock is released; a lock left by a process that died is
 * taken over, saying so on stderr. A CommandError says who holds it.
 */
export function holdDataDir(config: Config, command: string): DataDirLock {
  try {
    const lock = lockDataDir(config.dataDir, `tripline ${command}`);
    if (lock.takenOverFrom) {
      err(
        `Took over the data directory from ${describeHolder(lock.takenOverFrom)}, which is no longer running.\n`,
      );
    }
    return lock;
  } catch (error) {
    if (!(error instanceof DataDirLockedError)) throw error;
    throw new CommandError(`tripline ${command} refused: ${error.message}`);
  }
}
