import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { type Config, ConfigError, loadConfig } from '../config.js';
import { describeHolder, lockHolder } from '../data-dir-lock.js';
import { parseMasterKey } from '../modules/secrets/box.js';
import { describeDatabase } from '../storage/open.js';
import { type Command, CommandError, out } from './command.js';

/**
 * Problems with the master key the server would load (see loadMasterKey). A malformed
 * TRIPLINE_ENCRYPTION_KEY is loadConfig's to report; this reads the key file. A missing key file
 * beside an existing database is a problem too: the server would generate a new key, which opens
 * none of the secrets stored so far.
 */
function masterKeyProblems(config: Config): string[] {
  if (config.encryptionKey) return [];
  const file = config.encryptionKeyFile;
  if (!existsSync(file)) {
    return existsSync(config.databaseFile)
      ? [
          `TRIPLINE_ENCRYPTION_KEY_FILE: there is no master key at ${file}, but there is a database at ${config.databaseFile}; the server would generate a new key that opens none of its secrets. Point TRIPLINE_ENCRYPTION_KEY_FILE at the key file of that database (or set TRIPLINE_ENCRYPTION_KEY).`,
        ]
      : [];
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    return [
      `TRIPLINE_ENCRYPTION_KEY_FILE: cannot read ${file} (${(error as NodeJS.ErrnoException).code}); give this user read access to it, or point the variable at the key file.`,
    ];
  }
  try {
    parseMasterKey(text);
    return [];
  } catch {
    return [
      `TRIPLINE_ENCRYPTION_KEY_FILE: ${file} does not hold a master key (32 bytes as 64 hex characters or base64); point the variable at the key file the server generated, or set TRIPLINE_ENCRYPTION_KEY.`,
    ];
  }
}

/** The nearest directory at or above `path` that exists. */
function existingAncestor(path: string): string {
  let dir = path;
  while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

/** Whether the server could create or write its data directory. */
function dataDirProblems(config: Config): string[] {
  const dir = config.dataDir;
  if (existsSync(dir) && !statSync(dir).isDirectory()) {
    return [`TRIPLINE_DATA_DIR: ${dir} is not a directory; set the variable to a directory.`];
  }
  const writable = existingAncestor(dir);
  try {
    accessSync(writable, constants.W_OK);
    return [];
  } catch {
    return writable === dir
      ? [
          `TRIPLINE_DATA_DIR: ${dir} is not writable by this user; change its owner or permissions, or set the variable to another directory.`,
        ]
      : [
          `TRIPLINE_DATA_DIR: ${dir} does not exist and cannot be created (${writable} is not writable by this user); create it, or set the variable to another directory.`,
        ];
  }
}

function summary(config: Config): string {
  const keyFileState = existsSync(config.encryptionKeyFile)
    ? ''
    : ' (absent: generated at first start)';
  let holder: string;
  try {
    const held = lockHolder(config.dataDir);
    holder = held ? describeHolder(held) : 'nobody';
  } catch (error) {
    holder = (error as Error).message;
  }
  const absent = (path: string) => (existsSync(path) ? '' : ' (absent: created at first start)');
  return [
    'The configuration is valid.',
    `  address:        ${config.host}:${config.port} (not tried: another program may hold it)`,
    `  data directory: ${config.dataDir}${absent(config.dataDir)}`,
    config.databaseUrl === undefined
      ? `  database:       ${config.databaseFile}${absent(config.databaseFile)}`
      : `  database:       ${describeDatabase(config)} (not tried: \`tripline migrate\` connects)`,
    `  master key:     ${config.encryptionKey ? 'TRIPLINE_ENCRYPTION_KEY' : `${config.encryptionKeyFile}${keyFileState}`}`,
    `  in use by:      ${holder}`,
    '',
  ].join('\n');
}

export const checkConfig: Command = {
  name: 'check-config',
  summary: 'check the configuration in the environment; starts nothing',
  usage: `Usage: tripline check-config

Reads every setting from the environment as the server does when it starts (the
variables of the Configuration table in the README), then the master key from
TRIPLINE_ENCRYPTION_KEY or its key file, and whether the data directory can be
written. Each problem is printed on stderr, naming its variable and what to do, and
the command exits 2; with none, it prints what the server would use and exits 0.
It starts nothing, binds no port and writes nothing.

  -h, --help   show this help
`,
  options: {},
  run() {
    let config: Config;
    const problems: string[] = [];
    try {
      config = loadConfig();
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      config = error.config;
      problems.push(...error.problems);
    }
    problems.push(...masterKeyProblems(config), ...dataDirProblems(config));
    if (problems.length > 0) {
      throw new CommandError(
        `${new ConfigError(problems, config).message}\nFix these variables and run \`tripline check-config\` again.`,
        2,
      );
    }
    out(summary(config));
  },
};
