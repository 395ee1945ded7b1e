import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../src/errors.js';
import {
  aliasMatches,
  checkAliasPattern,
  MAX_PATTERN_LENGTH,
} from '../src/modules/automations/pattern.js';

const field = 'input.filter.aliasPattern';

function refusal(pattern: string): ValidationError {
  try {
    checkAliasPattern(pattern, field);
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return error as ValidationError;
  }
  throw new Error(`expected ${JSON.stringify(pattern)} to be refused`);
}

describe('aliasMatches', () => {
  it('searches anywhere in the alias unless anchored', () => {
    expect(aliasMatches('prod', 'preprod')).toBe(true);
    expect(aliasMatches('^prod', 'preprod')).toBe(false);
    expect(aliasMatches('^prod', 'production')).toBe(true);
    expect(aliasMatches('^(staging|production)$', 'production')).toBe(true);
    expect(aliasMatches('^(staging|production)$', 'production-2')).toBe(false);
    expect(aliasMatches('(?i)^PROD', 'production')).toBe(true);
    expect(aliasMatches('^v[0-9]+$', 'v12')).toBe(true);
    expect(aliasMatches('', 'anything')).toBe(true);
  });

  it('runs catastrophic-backtracking patterns in linear time', () => {
    const long = `${'a'.repeat(100_000)}b`;
    expect(aliasMatches('(a+)+$', long)).toBe(false);
    expect(aliasMatches('(a+)+b$', long)).toBe(true);
    expect(aliasMatches('^(a+)+$', long)).toBe(false);
    expect(aliasMatches('^(a|a)*$', long)).toBe(false);
    expect(aliasMatches('^(a|aa)*c', long)).toBe(false);
    expect(aliasMatches('^(.*a){20}$', long)).toBe(false);
    expect(aliasMatches('^(a+)+$', 'a'.repeat(100_000))).toBe(true);
  });

  it('stays correct when more patterns are used than the cache holds', () => {
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 1500; i++) {
        expect(aliasMatches(`^v${i}$`, `v${i}`)).toBe(true);
        expect(aliasMatches(`^v${i}$`, `v${i + 1}`)).toBe(false);
      }
    }
  });

  it('throws for a pattern that checkAliasPattern refuses', () => {
    expect(() => aliasMatches('(?=x)', 'x')).toThrow(ValidationError);
  });
});

describe('checkAliasPattern', () => {
  it('accepts RE2 patterns up to the length limit', () => {
    expect(() => checkAliasPattern('^(staging|production)$', field)).not.toThrow();
    expect(() => checkAliasPattern('a'.repeat(MAX_PATTERN_LENGTH), field)).not.toThrow();
  });

  it('refuses a pattern over the length limit', () => {
    const error = refusal('a'.repeat(MAX_PATTERN_LENGTH + 1));
    expect(error.field).toBe(field);
    expect(error.message).toContain(String(MAX_PATTERN_LENGTH));
  });

  it.each([
    ['(?=prod)', '(?='],
    ['(?!prod)', '(?!'],
    ['(?<=a)b', '(?<=a)b'],
    ['(a)\\1', '\\1'],
    ['[a-', 'missing closing ]'],
    ['(prod', 'missing closing )'],
    ['a{2,1}', 'invalid repeat count'],
    ['((a{100}){100}){100}', 'invalid repeat count'],
    ['*a', 'missing argument'],
  ])('refuses %j, naming the problem and the unsupported features', (pattern, problem) => {
    const error = refusal(pattern);
    expect(error.field).toBe(field);
    expect(error.message).toContain(problem);
    expect(error.message).toContain('backreferences');
    expect(error.message).toContain('lookaround');
  });

  it('refuses arbitrary strings with ValidationError or accepts them and runs them', () => {
    const patternText = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 300 }),
      fc.string({
        unit: fc.constantFrom(...'()[]{}|*+?.^$\\-,:=!<>PpdDwWsSbB0123456789abc'.split(''), '(?'),
      }),
    );
    fc.assert(
      fc.property(patternText, fc.string({ unit: 'binary' }), (pattern, alias) => {
        try {
          checkAliasPattern(pattern, field);
        } catch (error) {
          expect(error).toBeInstanceOf(ValidationError);
          expect((error as ValidationError).field).toBe(field);
          return;
        }
        expect(typeof aliasMatches(pattern, alias)).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });

  it('agrees with RegExp.test on patterns both engines accept', () => {
    const pattern = fc.string({ unit: fc.constantFrom(...'ab.|*+?()^$'.split('')), maxLength: 12 });
    const alias = fc.string({ unit: fc.constantFrom('a', 'b', 'c', '\n'), maxLength: 12 });
    fc.assert(
      fc.property(pattern, alias, (source, text) => {
        let js: RegExp;
        try {
          js = new RegExp(source);
          checkAliasPattern(source, field);
        } catch {
          return;
        }
        expect(aliasMatches(source, text)).toBe(js.test(text));
      }),
      { numRuns: 2000 },
    );
  });
});
