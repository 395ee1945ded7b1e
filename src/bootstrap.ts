import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { count } from 'drizzle-orm';
import { type Clock, systemClock } from './clock.js';
import type { Config } from './config.js';
import { insertEntity } from './modules/entities/service.js';
import { generateMasterKey, parseMasterKey } from './modules/secrets/box.js';
import { auditApiKey, createUser, issueApiKey } from './modules/users/service.js';
import type { Db } from './storage/sqlite/database.js';
import { users } from './storage/sqlite/schema.js';

export const BOOTSTRAP_ENTITY = 'default';

/**
 * The master key for secrets: `TRIPLINE_ENCRYPTION_KEY` when set, else the key file, which is
 * generated with mode 0600 on first start. Throws when the given key is malformed.
 */
export function loadMasterKey(config: Config): { key: Buffer; generatedFile?: string } {
  if (config.encryptionKey) return { key: parseMasterKey(config.encryptionKey) };
  if (existsSync(config.encryptionKeyFile)) {
    return { key: parseMasterKey(readFileSync(config.encryptionKeyFile, 'utf8')) };
  }
  const text = generateMasterKey();
  writeFileSync(config.encryptionKeyFile, `${text}\n`, { mode: 0o600, flag: 'wx' });
  return { key: parseMasterKey(text), generatedFile: config.encryptionKeyFile };
}

export interface Bootstrapped {
  apiKey: string;
  /** Where the key was written, when it was generated rather than given. */
  keyFile?: string;
  entity: string;
}

/**
 * On an empty database, creates the admin user, the `default` entity with that user as its
 * admin, and an API key (`TRIPLINE_ADMIN_API_KEY` when set, else generated and written with
 * mode 0600 to `<data dir>/admin-api-key`). Returns undefined when users already exist.
 */
export function bootstrap(
  db: Db,
  config: Config,
  clock: Clock = systemClock,
): Bootstrapped | undefined {
  const existing = db.select({ n: count() }).from(users).get()?.n ?? 0;
  if (existing > 0) return undefined;
  return db.transaction(() => {
    const admin = createUser({ db }, { name: 'admin', kind: 'USER' });
    insertEntity({ db, clock }, BOOTSTRAP_ENTITY, admin.id);
    const { apiKey, secret } = issueApiKey(
      { db },
      admin.id,
      'bootstrap admin key',
      config.adminApiKey,
    );
    auditApiKey({ db, clock }, admin.id, 'apiKey.created', apiKey);
    if (config.adminApiKey) return { apiKey: secret, entity: BOOTSTRAP_ENTITY };
    const keyFile = `${config.dataDir}/admin-api-key`;
    writeFileSync(keyFile, `${secret}\n`, { mode: 0o600 });
    return { apiKey: secret, keyFile, entity: BOOTSTRAP_ENTITY };
  });
}
