import { parseArgs } from 'node:util';
import { adminKey } from './admin-key.js';
import { checkConfig } from './check-config.js';
import { type Command, CommandError, err, type OptionValues, out } from './command.js';
import { migrateCommand } from './migrate.js';
import { rotateMasterKeyCommand } from './rotate-master-key.js';

// `tripline <command>`: what an operator does to a data directory outside the API. Exit codes:
// 0 done, 1 refused or failed (nothing changed unless the message says so), 2 bad arguments or
// configuration.

const COMMANDS: readonly Command[] = [
  adminKey,
  rotateMasterKeyCommand,
  migrateCommand,
  checkConfig,
];

const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
const USAGE = `Usage: tripline <command> [options]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`).join('\n')}

Each command works on the data directory of the environment, read as the server
reads it (TRIPLINE_DATA_DIR, …). \`tripline <command> --help\` tells more.
`;

async function run(argv: readonly string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (name === undefined) throw new CommandError(USAGE, 2);
  if (name === '--help' || name === '-h' || name === 'help') {
    const topic = COMMANDS.find((c) => c.name === rest[0]);
    out(topic ? topic.usage : USAGE);
    return;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) throw new CommandError(`Unknown command "${name}".\n\n${USAGE}`, 2);
  let values: OptionValues;
  try {
    ({ values } = parseArgs({
      args: rest,
      options: { ...command.options, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }) as { values: OptionValues });
  } catch (error) {
    throw new CommandError(`${(error as Error).message}\n\n${command.usage}`, 2);
  }
  if (values.help) {
    out(command.usage);
    return;
  }
  await command.run(values);
}

try {
  await run(process.argv.slice(2));
} catch (error) {
  if (!(error instanceof CommandError)) throw error;
  err(`${error.message.trimEnd()}\n`);
  process.exitCode = error.exitCode;
}
