/** The GraphQL documents the dashboard sends: the public API, nothing else. */

export const RUN_ROW = `
  fragment RunRow on TriggeredRun {
    id status automationName attemptCount createdAt updatedAt result
    automation { id }
    event { id eventType versionString project { id name } registry { id name } }
    runEvent { eventType condition runState metricName metricValues
      run { id name project { id name } } }
  }`;

export const VIEWER = `query DashboardViewer {
  viewer { user { name } entities { role entity { name } } }
}`;

const PAGE = `totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  edges { node { ...RunRow } }`;

const PAGE_ARGS = 'filter: $filter, first: $first, after: $after, last: $last, before: $before';

export const ENTITY_RUNS = `query DashboardRuns($entity: String!, $filter: TriggeredRunFilter,
  $first: Int, $after: String, $last: Int, $before: String) {
  entity(name: $entity) { triggeredRuns(${PAGE_ARGS}) { ${PAGE} } }
}
${RUN_ROW}`;

export const OWNER_RUNS = `query DashboardOwnerRuns($owner: ID!, $filter: TriggeredRunFilter,
  $first: Int, $after: String, $last: Int, $before: String) {
  node(id: $owner) {
    ... on Project { triggeredRuns(${PAGE_ARGS}) { ${PAGE} } }
    ... on Registry { triggeredRuns(${PAGE_ARGS}) { ${PAGE} } }
  }
}
${RUN_ROW}`;

export const FILTER_CHOICES = `query DashboardFilterChoices($entity: String!) {
  entity(name: $entity) {
    automations(first: 100) { edges { node { id name } } }
    projects(first: 100) { edges { node { id name } } }
    registries(first: 100) { edges { node { id name } } }
  }
}`;

export const RUN_UPDATED = `subscription DashboardRunUpdated($entity: String!) {
  triggeredRunUpdated(entity: $entity) { ...RunRow }
}
${RUN_ROW}`;

export const RUN = `query DashboardRun($id: ID!) {
  triggeredRun(id: $id) {
    ...RunRow
    nextAttemptAt finishedAt
    event {
      author createdAt collectionName artifactType versionIndex alias tag metadata versionUri
    }
    attempts {
      attemptNumber startedAt durationMs statusCode errorClass errorMessage responseBody
    }
  }
}
${RUN_ROW}`;

export const RETRY_RUN = `mutation DashboardRetryRun($id: ID!) {
  retryTriggeredRun(input: { id: $id }) {
    __typename
    ... on RetryTriggeredRunPayload { run { ...RunRow } }
    ... on Error { message }
  }
}
${RUN_ROW}`;

const LAST_RUN = 'triggeredRuns(first: 1) { edges { node { id status createdAt } } }';

export const AUTOMATIONS = `query DashboardAutomations($entity: String!) {
  entity(name: $entity) {
    automations(first: 100) {
      totalCount
      edges { node {
        id name description enabled eventType
        scope { type project { name } registry { name } collection { name } }
        action { id name kind }
        ${LAST_RUN}
      } }
    }
    actions(first: 100) {
      totalCount
      edges { node {
        __typename id name kind enabled disabledReason usedBy
        ... on WebhookAction { url }
        ... on SlackAction { channel }
      } }
    }
  }
}`;

export const SET_AUTOMATION_ENABLED = `mutation DashboardSetAutomationEnabled($id: ID!, $enabled: Boolean!) {
  updateAutomation(input: { id: $id, enabled: $enabled }) {
    __typename
    ... on UpdateAutomationPayload { automation { id enabled } }
    ... on Error { message }
  }
}`;

export const SET_ACTION_ENABLED = `mutation DashboardSetActionEnabled($id: ID!, $enabled: Boolean!) {
  updateAction(input: { id: $id, enabled: $enabled }) {
    __typename
    ... on UpdateActionPayload { action { id enabled disabledReason } }
    ... on Error { message }
  }
}`;

export const TEST_ACTION = `mutation DashboardTestAction($id: ID!) {
  testAction(input: { id: $id }) {
    __typename
    ... on TestActionPayload {
      response { success sent statusCode durationMs errorClass errorMessage responseBody }
    }
    ... on Error { message }
  }
}`;

export const SECRETS = `query DashboardSecrets($entity: String!) {
  entity(name: $entity) {
    secrets(first: 100) {
      edges { node {
        id name createdAt rotatedAt createdBy { name } rotatedBy { name }
        usedBy { actions automations }
      } }
    }
  }
}`;

export const CREATE_SECRET = `mutation DashboardCreateSecret($entity: String!, $name: String!, $value: String!) {
  createSecret(input: { entity: $entity, name: $name, value: $value }) {
    __typename ... on Error { message }
  }
}`;

export const ROTATE_SECRET = `mutation DashboardRotateSecret($entity: String!, $name: String!, $value: String!) {
  rotateSecret(input: { entity: $entity, name: $name, value: $value }) {
    __typename ... on Error { message }
  }
}`;

export const DELETE_SECRET = `mutation DashboardDeleteSecret($entity: String!, $name: String!) {
  deleteSecret(input: { entity: $entity, name: $name }) {
    __typename ... on Error { message }
  }
}`;

export const DELIVERY_STATS = `query DashboardDeliveryStats($entity: String!, $minutes: Int!) {
  entity(name: $entity) {
    deliveryStats(minutes: $minutes) {
      until truncated
      attempts { startedAt durationMs outcome }
      backlog { queued running retrying total }
    }
  }
}`;

/** A mutation's typed answer: its payload, or an error result with a message. */
export type MutationResult<P> =
  | ({ __typename: string } & P)
  | { __typename: string; message: string };

/** The message of an error result, or null for a payload. */
export function errorOf(result: { __typename: string; message?: string }): string | null {
  return typeof result.message === 'string' ? result.message : null;
}
