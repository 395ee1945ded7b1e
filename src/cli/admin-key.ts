import { systemClock } from '../clock.js';
import { type Command, CommandError, ENVIRONMENT_HELP, err, out, readConfig } from './command.js';

const DEFAULT_KEY_NAME = 'issued by tripline admin-key';

export const adminKey: Command = {
  name: 'admin-key',
  summary: 'issue a new API key for an admin whose key is lost',
  usage: `Usage: tripline admin-key [--entity NAME] [--user NAME | --user usr_…] [--name TEXT]

Issues a new API key for a person who is an admin of an entity, for when their key
is lost. The key is printed once, alone on stdout (so KEY=$(tripline admin-key)
works), and stored only as a hash; what was done goes to stderr. The key's creation
is recorded in the audit log (apiKey.created) of every entity the admin belongs to.
Existing keys keep working: revoke a lost one (revokeApiKey) with the new key.

Allowed while the server runs: SQLite in WAL mode lets this command write while the
server reads and writes, and the server looks every key up in the database, so the
new key works at once. The database must have this version's migrations.

  --entity NAME   the entity whose admin gets the key (default: "default",
                  the entity the first start created)
  --user WHO      that admin, by name or by id (usr_…), when the entity has several
  --name TEXT     the key's name in apiKeys and the audit log
                  (default: "${DEFAULT_KEY_NAME}")
  -h, --help      show this help

${ENVIRONMENT_HELP}
`,
  options: {
    entity: { type: 'string' },
    user: { type: 'string' },
    name: { type: 'string' },
  },
  async run(values) {
    const config = readConfig();
    const { BOOTSTRAP_ENTITY } = await import('../bootstrap.js');
    const { checkName } = await import('../modules/names.js');
    const { issueAdminKey, openExistingDatabase } = await import('./database.js');
    let keyName: string;
    try {
      keyName = checkName(String(values.name ?? DEFAULT_KEY_NAME), '--name');
    } catch (error) {
      throw new CommandError(`--name: ${(error as Error).message}`, 2);
    }
    const storage = await openExistingDatabase(config);
    try {
      const issued = await issueAdminKey(storage, systemClock, {
        entity: String(values.entity ?? BOOTSTRAP_ENTITY),
        user: typeof values.user === 'string' ? values.user : undefined,
        keyName,
      });
      err(
        `Issued a new API key "${issued.keyName}" for ${issued.user.name} (${issued.user.id}), admin of "${issued.entity}"; recorded in the audit log. It is shown once, below:\n`,
      );
      out(`${issued.secret}\n`);
    } finally {
      await storage.close();
    }
  },
};
