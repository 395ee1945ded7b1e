import {
  type GraphQLArgument,
  type GraphQLNamedType,
  type GraphQLObjectType,
  getNamedType,
  getNullableType,
  isEnumType,
  isInputObjectType,
  isInterfaceType,
  isListType,
  isNonNullType,
  isObjectType,
  isScalarType,
  isUnionType,
} from 'graphql';
import { describe, expect, it } from 'vitest';
import { schema } from '../src/schema.js';

/**
 * The conventions of README "Schema conventions", checked on the built schema so a new field
 * that breaks one fails here.
 */

const upperFirst = (name: string) => `${name[0]?.toUpperCase()}${name.slice(1)}`;

const errorInterface = schema.getType('Error');

function isErrorType(type: GraphQLNamedType): boolean {
  return isObjectType(type) && type.getInterfaces().some((i) => i === errorInterface);
}

/** Object types shaped as Relay connections: `edges` of objects with `cursor` and `node`. */
function connectionTypes(): { type: GraphQLObjectType; node: GraphQLNamedType }[] {
  return Object.values(schema.getTypeMap()).flatMap((type) => {
    if (!isObjectType(type) || type.name.startsWith('__')) return [];
    const edges = type.getFields().edges;
    if (!edges || !isListType(getNullableType(edges.type))) return [];
    const edge = getNamedType(edges.type);
    const node = isObjectType(edge) ? edge.getFields().node : undefined;
    return node ? [{ type, node: getNamedType(node.type) }] : [];
  });
}

describe('schema conventions', () => {
  const mutations = Object.values(schema.getMutationType()?.getFields() ?? {});

  it('has mutations to check', () => {
    expect(mutations.length).toBeGreaterThan(20);
  });

  it('gives every mutation exactly one argument, `input: <Mutation>Input!`', () => {
    const wrong = mutations.flatMap((field) => {
      const [arg, ...more] = field.args;
      const expected = `${upperFirst(field.name)}Input`;
      const ok =
        more.length === 0 &&
        arg?.name === 'input' &&
        isNonNullType(arg.type) &&
        isInputObjectType(arg.type.ofType) &&
        arg.type.ofType.name === expected;
      return ok ? [] : [`${field.name}(${field.args.map((a) => `${a.name}: ${a.type}`)})`];
    });
    expect(wrong).toEqual([]);
  });

  it('answers every mutation with `<Mutation>Result!`: one `<Mutation>Payload` and Error types', () => {
    const wrong = mutations.flatMap((field) => {
      const name = upperFirst(field.name);
      const result = isNonNullType(field.type) ? field.type.ofType : undefined;
      if (!isUnionType(result) || result.name !== `${name}Result`) {
        return [`${field.name}: ${field.type} is not ${name}Result!`];
      }
      const members = result.getTypes();
      const payloads = members.filter((t) => !isErrorType(t));
      const problems: string[] = [];
      if (payloads.length !== 1 || payloads[0]?.name !== `${name}Payload`) {
        problems.push(`${result.name} has ${payloads.map((t) => t.name)} besides errors`);
      }
      if (members.length < 2) problems.push(`${result.name} lists no error type`);
      return problems;
    });
    expect(wrong).toEqual([]);
  });

  it('names every payload after its mutation and uses no payload twice', () => {
    const payloads = mutations.map((field) => {
      const result = getNamedType(field.type);
      return isUnionType(result) ? result.getTypes().find((t) => !isErrorType(t))?.name : null;
    });
    expect(new Set(payloads).size).toBe(mutations.length);
  });

  it('has one connection type per node type, named `<Node>Connection` with `<Node>Edge`', () => {
    const connections = connectionTypes();
    expect(connections.length).toBeGreaterThan(5);
    const wrong = connections.flatMap(({ type, node }) => {
      const edge = getNamedType(type.getFields().edges!.type);
      const problems: string[] = [];
      if (type.name !== `${node.name}Connection`) problems.push(`${type.name} of ${node.name}`);
      if (edge.name !== `${node.name}Edge`) problems.push(`${edge.name} of ${node.name}`);
      if (!type.getFields().totalCount) problems.push(`${type.name} has no totalCount`);
      return problems;
    });
    expect(wrong).toEqual([]);
    const nodes = connections.map(({ node }) => node.name);
    expect(nodes.length).toBe(new Set(nodes).size);
  });

  it('types closed sets as enums: no errorClass, requiredRole, action or targetType is a String', () => {
    const closed = new Set(['errorClass', 'requiredRole', 'action', 'targetType']);
    const strings: string[] = [];
    const enums: string[] = [];
    for (const type of Object.values(schema.getTypeMap())) {
      if (type.name.startsWith('__')) continue;
      if (!isObjectType(type) && !isInterfaceType(type) && !isInputObjectType(type)) continue;
      for (const field of Object.values(type.getFields())) {
        const typed = [
          { name: `${type.name}.${field.name}`, key: field.name, type: field.type },
          ...('args' in field ? field.args : []).map((arg: GraphQLArgument) => ({
            name: `${type.name}.${field.name}(${arg.name})`,
            key: arg.name,
            type: arg.type,
          })),
        ];
        for (const { name, key, type: t } of typed) {
          if (!closed.has(key)) continue;
          const named = getNamedType(t);
          if (isScalarType(named) && named.name === 'String') strings.push(name);
          if (isEnumType(named)) enums.push(name);
        }
      }
    }
    expect(strings).toEqual([]);
    // The checks above cover something: these are enums now.
    expect(enums).toEqual(
      expect.arrayContaining([
        'DeliveryResult.errorClass',
        'PermissionDeniedError.requiredRole',
        'AuditEntry.action',
        'AuditEntry.targetType',
        'Entity.auditLog(action)',
        'Entity.auditLog(targetType)',
      ]),
    );
  });

  it('names a collection owner with an @oneOf input: project or registry, never both', () => {
    const owner = schema.getType('CollectionOwnerInput');
    if (!isInputObjectType(owner)) throw new Error('CollectionOwnerInput is missing');
    expect(owner.isOneOf).toBe(true);
    expect(Object.keys(owner.getFields()).sort()).toEqual(['project', 'registry']);
    for (const name of ['EmitArtifactEventInput', 'CreateArtifactCollectionInput']) {
      const input = schema.getType(name);
      if (!isInputObjectType(input)) throw new Error(`${name} is missing`);
      const fields = input.getFields();
      expect(Object.keys(fields)).not.toContain('project');
      expect(Object.keys(fields)).not.toContain('registry');
      expect(String(fields.owner?.type)).toBe('CollectionOwnerInput!');
    }
  });

  it('names an automation scope with an @oneOf input: one project, registry, collection or the entity', () => {
    const scope = schema.getType('AutomationScopeInput');
    if (!isInputObjectType(scope)) throw new Error('AutomationScopeInput is missing');
    expect(scope.isOneOf).toBe(true);
    const fields = scope.getFields();
    expect(Object.keys(fields).sort()).toEqual([
      'entity',
      'project',
      'projectCollection',
      'registry',
      'registryCollection',
    ]);
    expect(String(fields.entity?.type)).toBe('Boolean');
    expect(String(fields.projectCollection?.type)).toBe('ProjectCollectionInput');
    expect(String(fields.registryCollection?.type)).toBe('RegistryCollectionInput');
    for (const [name, owner] of [
      ['ProjectCollectionInput', 'project'],
      ['RegistryCollectionInput', 'registry'],
    ] as const) {
      const input = schema.getType(name);
      if (!isInputObjectType(input)) throw new Error(`${name} is missing`);
      const inner = input.getFields();
      expect(Object.keys(inner).sort()).toEqual([owner, 'collection'].sort());
      expect(String(inner[owner]?.type)).toBe('String!');
      expect(String(inner.collection?.type)).toBe('String!');
    }
    for (const [name, type] of [
      ['CreateAutomationInput', 'AutomationScopeInput!'],
      ['UpdateAutomationInput', 'AutomationScopeInput'],
    ] as const) {
      const input = schema.getType(name);
      if (!isInputObjectType(input)) throw new Error(`${name} is missing`);
      expect(String(input.getFields().scope?.type)).toBe(type);
    }
  });
});
