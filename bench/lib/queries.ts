/** The GraphQL documents the figures send, shared so every figure measures the same request. */

export const TYPENAME = '{ __typename }';

/** One CREATE_ARTIFACT event; answers with the event and its runs, as a CI script would ask. */
export const EMIT = `mutation($entity: String!, $project: String!, $v: Int!) {
  emitArtifactEvent(input: { entity: $entity, eventType: CREATE_ARTIFACT, owner: { project: $project },
    collection: "model", artifactType: "model", versionIndex: $v }) {
    __typename ... on EmitArtifactEventPayload { event { id } triggeredRuns { id status } }
    ... on Error { message } } }`;

export interface EmitAnswer {
  emitArtifactEvent: { __typename: string; triggeredRuns?: { id: string; status: string }[] };
}

/** What a live dashboard subscribes to: every run update of one entity. */
export const SUBSCRIPTION = `subscription {
  triggeredRunUpdated(entity: "default") { id status automationName attemptCount result updatedAt } }`;
