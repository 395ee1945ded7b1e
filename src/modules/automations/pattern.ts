import { RE2JS, RE2JSException } from 're2js';
import { ValidationError } from '../../errors.js';

/** Longest alias or tag pattern accepted, in UTF-16 code units. */
export const MAX_PATTERN_LENGTH = 256;

/** Compiled patterns, oldest first; matching runs on every alias and tag event, so compile once. */
const compiled = new Map<string, RE2JS>();
const CACHE_SIZE = 1000;

const UNSUPPORTED_NOTE =
  'Patterns use RE2 syntax, which runs in linear time; backreferences (\\1) and lookaround ((?=…), (?!…), (?<=…), (?<!…)) are not supported';

/** Compiles through the cache; throws ValidationError(field) for a pattern RE2 refuses. */
function compile(pattern: string, field: string, noun = 'alias'): RE2JS {
  const hit = compiled.get(pattern);
  if (hit !== undefined) {
    // Re-insert so the Map's insertion order tracks recency and eviction drops the coldest.
    compiled.delete(pattern);
    compiled.set(pattern, hit);
    return hit;
  }
  if (pattern.length > MAX_PATTERN_LENGTH) {
    throw new ValidationError(
      field,
      `The ${noun} pattern is ${pattern.length} characters; the limit is ${MAX_PATTERN_LENGTH}`,
    );
  }
  let re: RE2JS;
  try {
    re = RE2JS.compile(pattern);
  } catch (error) {
    if (!(error instanceof RE2JSException)) throw error;
    throw new ValidationError(
      field,
      `Invalid ${noun} pattern: ${error.message}. ${UNSUPPORTED_NOTE}`,
    );
  }
  compiled.set(pattern, re);
  if (compiled.size > CACHE_SIZE) {
    const oldest = compiled.keys().next();
    if (!oldest.done) compiled.delete(oldest.value);
  }
  return re;
}

/**
 * Checks an alias (or, with `noun` "tag", a tag) pattern when an automation is saved. Throws `ValidationError(field, …)` when it
 * is longer than {@link MAX_PATTERN_LENGTH} or is not valid RE2 syntax; the message names the
 * problem and notes that backreferences and lookaround are unsupported.
 */
export function checkAliasPattern(pattern: string, field: string, noun = 'alias'): void {
  compile(pattern, field, noun);
}

/**
 * True when the pattern matches anywhere in `alias` (an unanchored search, like `RegExp.test`;
 * use `^…$` to match the whole alias). Runs in time linear in the alias. Compiled patterns are
 * cached (the most recently used 1000). A pattern that fails {@link checkAliasPattern} throws
 * the same `ValidationError`, with field `pattern`.
 */
export function aliasMatches(pattern: string, alias: string): boolean {
  return compile(pattern, 'pattern').test(alias);
}

/** {@link aliasMatches} for any name an event carries: an alias or a tag. */
export const patternMatches = aliasMatches;
