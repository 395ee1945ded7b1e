import { ValidationError } from '../errors.js';

export const MAX_NAME_LENGTH = 64;
export const MAX_DESCRIPTION_LENGTH = 1024;

const SLUG = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * Checks a display name (users, keys, actions, automations): 1 to 64 characters after
 * trimming, no control characters. Returns the trimmed name; throws ValidationError on `field`.
 */
export function checkName(name: string, field: string): string {
  const trimmed = name.trim();
  if (trimmed.length === 0 || trimmed.length > MAX_NAME_LENGTH) {
    throw new ValidationError(field, `Use a name of 1 to ${MAX_NAME_LENGTH} characters.`);
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we refuse
  if (/[\u0000-\u001f\u007f]/.test(trimmed)) {
    throw new ValidationError(field, 'Names cannot contain control characters such as newlines.');
  }
  return trimmed;
}

/**
 * Checks a name that appears in paths and version strings (entities, projects, registries,
 * collections): 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit.
 */
export function checkSlug(name: string, field: string): string {
  if (name.length === 0 || name.length > MAX_NAME_LENGTH || !SLUG.test(name)) {
    throw new ValidationError(
      field,
      `"${name.slice(0, MAX_NAME_LENGTH)}" is not a valid name: use 1 to ${MAX_NAME_LENGTH} letters, digits, ".", "_" or "-", starting with a letter or digit.`,
    );
  }
  return name;
}

/** Checks an optional description: at most 1024 characters. Returns it trimmed, or null. */
export function checkDescription(text: string | null | undefined, field: string): string | null {
  if (text == null) return null;
  if (text.length > MAX_DESCRIPTION_LENGTH) {
    throw new ValidationError(
      field,
      `Keep the description to ${MAX_DESCRIPTION_LENGTH} characters.`,
    );
  }
  return text.trim() || null;
}
