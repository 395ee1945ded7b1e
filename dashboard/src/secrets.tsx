import { useState } from 'preact/hooks';
import { CREATE_SECRET, DELETE_SECRET, errorOf, ROTATE_SECRET, SECRETS } from './queries';
import { Alert, type Session, Time, useLoad } from './ui';

interface Secret {
  id: string;
  name: string;
  createdAt: string;
  rotatedAt: string | null;
  createdBy: { name: string } | null;
  rotatedBy: { name: string } | null;
  usedBy: { actions: string[]; automations: string[] };
}

type Answer = Record<string, { __typename: string; message?: string }>;

/** Secrets by name, for admins: values go in and are never shown back. */
export function SecretsPage({ session }: { session: Session }) {
  const { api, entity } = session;
  const secrets = useLoad(
    async () =>
      (
        await api.request<{ entity: { secrets: { edges: { node: Secret }[] } } }>(SECRETS, {
          entity,
        })
      ).entity.secrets.edges.map((e) => e.node),
    [api, entity],
  );
  const [message, setMessage] = useState<{ text: string; tone: 'error' | 'ok' } | null>(null);
  const [name, setName] = useState('');
  const [value, setValue] = useState('');
  const [rotating, setRotating] = useState<string | null>(null);
  const [newValue, setNewValue] = useState('');
  const [deleting, setDeleting] = useState<string | null>(null);

  /** Sends a secret mutation; shows its error or `done`; reloads the list on success. */
  const send = async (query: string, variables: Record<string, string>, done: string) => {
    setMessage(null);
    try {
      const data = await api.request<Answer>(query, { entity, ...variables });
      const result = Object.values(data)[0];
      const error = result ? errorOf(result) : 'No answer.';
      setMessage(error ? { text: error, tone: 'error' } : { text: done, tone: 'ok' });
      if (!error) secrets.reload();
      return !error;
    } catch (failure) {
      setMessage({
        text: failure instanceof Error ? failure.message : String(failure),
        tone: 'error',
      });
      return false;
    }
  };

  return (
    <section aria-labelledby="secrets-title">
      <h1 id="secrets-title">Secrets</h1>
      <p class="muted">
        Values are write-only: they are encrypted at rest and never shown again, here or anywhere.
      </p>
      {secrets.error && <Alert>{secrets.error}</Alert>}
      {message && <Alert tone={message.tone}>{message.text}</Alert>}
      <form
        class="inline-form"
        onSubmit={async (event) => {
          event.preventDefault();
          if (await send(CREATE_SECRET, { name, value }, `Secret ${name} created.`)) {
            setName('');
          }
          setValue('');
        }}
      >
        <label>
          Name
          <input
            value={name}
            required
            pattern="[A-Z][A-Z0-9_]*"
            title="UPPER_SNAKE_CASE, e.g. DEPLOY_TOKEN"
            placeholder="DEPLOY_TOKEN"
            onInput={(event) => setName(event.currentTarget.value)}
          />
        </label>
        <label>
          Value
          <input
            type="password"
            autocomplete="new-password"
            value={value}
            required
            onInput={(event) => setValue(event.currentTarget.value)}
          />
        </label>
        <button type="submit" class="primary">
          Create secret
        </button>
      </form>
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Created</th>
              <th scope="col">Rotated</th>
              <th scope="col">Used by</th>
              <th scope="col">Manage</th>
            </tr>
          </thead>
          <tbody>
            {secrets.data?.map((secret) => (
              <tr key={secret.id}>
                <td class="mono">{secret.name}</td>
                <td>
                  <Time value={secret.createdAt} />{' '}
                  {secret.createdBy ? `by ${secret.createdBy.name}` : ''}
                </td>
                <td>
                  <Time value={secret.rotatedAt} />{' '}
                  {secret.rotatedBy ? `by ${secret.rotatedBy.name}` : ''}
                </td>
                <td>
                  {[...secret.usedBy.actions, ...secret.usedBy.automations].join(', ') || '—'}
                </td>
                <td>
                  {rotating === secret.name ? (
                    <form
                      class="inline-form"
                      onSubmit={async (event) => {
                        event.preventDefault();
                        const done = await send(
                          ROTATE_SECRET,
                          { name: secret.name, value: newValue },
                          `Secret ${secret.name} rotated.`,
                        );
                        setNewValue('');
                        if (done) setRotating(null);
                      }}
                    >
                      <label>
                        New value for {secret.name}
                        <input
                          type="password"
                          autocomplete="new-password"
                          required
                          value={newValue}
                          onInput={(event) => setNewValue(event.currentTarget.value)}
                        />
                      </label>
                      <button type="submit" class="primary">
                        Save
                      </button>
                      <button type="button" onClick={() => setRotating(null)}>
                        Cancel
                      </button>
                    </form>
                  ) : deleting === secret.name ? (
                    <span class="buttons">
                      <button
                        type="button"
                        class="danger"
                        onClick={async () => {
                          await send(
                            DELETE_SECRET,
                            { name: secret.name },
                            `Secret ${secret.name} deleted.`,
                          );
                          setDeleting(null);
                        }}
                      >
                        Delete {secret.name} for good
                      </button>
                      <button type="button" onClick={() => setDeleting(null)}>
                        Keep it
                      </button>
                    </span>
                  ) : (
                    <span class="buttons">
                      <button type="button" onClick={() => setRotating(secret.name)}>
                        Rotate<span class="visually-hidden"> {secret.name}</span>
                      </button>
                      <button type="button" onClick={() => setDeleting(secret.name)}>
                        Delete<span class="visually-hidden"> {secret.name}</span>
                      </button>
                    </span>
                  )}
                </td>
              </tr>
            ))}
            {secrets.data?.length === 0 && (
              <tr>
                <td colSpan={5} class="muted">
                  No secrets yet.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
    </section>
  );
}
