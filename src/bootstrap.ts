import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from './config.js';
import type { AppDeps } from './context.js';
import { newId } from './ids.js';
import { generateMasterKey, parseMasterKey } from './modules/secrets/box.js';
import { keyAudit, newApiKey } from './modules/users/service.js';

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
 * mode 0600 to `<data dir>/admin-api-key`), all in one transaction. Returns undefined, and
 * writes nothing, when users already exist.
 */
export async function bootstrap(
  deps: Pick<AppDeps, 'storage' | 'clock'>,
  config: Config,
): Promise<Bootstrapped | undefined> {
  if (await deps.storage.users.hasUsers()) return undefined;
  const user = { id: newId(), name: 'admin', kind: 'USER' as const };
  const entity = { id: newId(), name: BOOTSTRAP_ENTITY };
  const { key, secret } = newApiKey(user.id, 'bootstrap admin key', config.adminApiKey);
  // A generated key must reach its file exactly when the admin is stored: it is written aside
  // first and put in place only after the transaction commits.
  const keyFile = config.adminApiKey ? undefined : join(config.dataDir, 'admin-api-key');
  const pending = keyFile && `${keyFile}.${process.pid}.pending`;
  if (pending) writeFileSync(pending, `${secret}\n`, { mode: 0o600 });
  try {
    const created = await deps.storage.users.bootstrap(
      { user, entity, key },
      [
        {
          entityId: entity.id,
          actorId: user.id,
          action: 'entity.created',
          targetType: 'Entity',
          targetId: entity.id,
          details: { name: entity.name },
        },
        { ...keyAudit('apiKey.created', user.id, key, user.name), entityId: entity.id },
      ],
      deps.clock.now(),
    );
    if (!created) return undefined;
    if (pending && keyFile) renameSync(pending, keyFile);
  } finally {
    if (pending) rmSync(pending, { force: true });
  }
  return keyFile
    ? { apiKey: secret, keyFile, entity: BOOTSTRAP_ENTITY }
    : { apiKey: secret, entity: BOOTSTRAP_ENTITY };
}
