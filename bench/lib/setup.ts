import { mutate } from './http.js';
import { makeTempDir } from './process.js';
import { startTripline } from './server.js';

/**
 * What every figure starts from: a stopped server's data directory, set up through the public
 * API, that figures copy (lib/seed.ts cloneDataDir) and add bulk state to.
 *
 * In `default`: webhook actions `fast` (answered at once by the receiver) and `hang` (held open
 * by it), and per figure one project with automations on `CREATE_ARTIFACT`:
 * `deliveries`, `latency`, `live` → fast; `busy` → hang; `history` with `history-0…9` → fast.
 * Entities `e1k` and `e10k` each hold a `hang` action and the projects `watched` and `quiet`.
 */
export interface Template {
  dataDir: string;
  /** The `whsec_…` secret of `default`'s `fast` action, for baselines that sign like it. */
  fastSigningSecret: string;
}

const CREATE_PROJECT = `mutation($entity: String!, $name: String!) {
  createProject(input: { entity: $entity, name: $name }) { __typename ... on Error { message } } }`;

const CREATE_ENTITY = `mutation($name: String!) {
  createEntity(input: { name: $name }) { __typename ... on Error { message } } }`;

const CREATE_ACTION = `mutation($entity: String!, $name: String!, $url: String!) {
  createWebhookAction(input: { entity: $entity, name: $name, url: $url }) {
    __typename ... on CreateWebhookActionPayload { signingSecret action { id } } ... on Error { message } } }`;

const CREATE_AUTOMATION = `mutation($entity: String!, $name: String!, $project: String!, $action: ID!) {
  createAutomation(input: { entity: $entity, name: $name, eventType: CREATE_ARTIFACT,
    scope: { project: $project }, action: { actionId: $action } }) {
    __typename ... on Error { message } } }`;

/** Starts a server on a new data directory, sets it up (see {@link Template}), stops it. */
export async function createTemplate(receiverUrl: string): Promise<Template> {
  const dataDir = makeTempDir('tripline-bench-template-');
  const server = await startTripline({ dataDir });
  try {
    const { url, adminKey: key } = server;
    const project = (entity: string, name: string) =>
      mutate(url, key, CREATE_PROJECT, { entity, name }, 'CreateProjectPayload');
    const action = (entity: string, name: string, path: string) =>
      mutate<{ signingSecret: string; action: { id: string } }>(
        url,
        key,
        CREATE_ACTION,
        { entity, name, url: `${receiverUrl}${path}` },
        'CreateWebhookActionPayload',
      );
    const automation = (entity: string, name: string, projectName: string, actionId: string) =>
      mutate(
        url,
        key,
        CREATE_AUTOMATION,
        { entity, name, project: projectName, action: actionId },
        'CreateAutomationPayload',
      );

    const fast = await action('default', 'fast', '/ok');
    const hang = await action('default', 'hang', '/hang');
    for (const name of ['deliveries', 'latency', 'live', 'busy', 'history']) {
      await project('default', name);
    }
    for (const name of ['deliveries', 'latency', 'live']) {
      await automation('default', name, name, fast.action.id);
    }
    await automation('default', 'busy', 'busy', hang.action.id);
    for (let i = 0; i < 10; i += 1) {
      await automation('default', `history-${i}`, 'history', fast.action.id);
    }
    for (const entity of ['e1k', 'e10k']) {
      await mutate(url, key, CREATE_ENTITY, { name: entity }, 'CreateEntityPayload');
      await action(entity, 'hang', '/hang');
      await project(entity, 'watched');
      await project(entity, 'quiet');
    }
    return { dataDir, fastSigningSecret: fast.signingSecret };
  } finally {
    await server.stop();
  }
}
