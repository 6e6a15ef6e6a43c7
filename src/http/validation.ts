import type { FastifyInstance } from 'fastify';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';

/** JSON pointer (ajv's instancePath) of the first string, or object key, holding U+0000; null when none. */
function nulCharacterAt(value: unknown, path = ''): string | null {
  if (typeof value === 'string') return value.includes('\u0000') ? path : null;
  if (value === null || typeof value !== 'object') return null;
  for (const [key, child] of Object.entries(value)) {
    const at = `${path}/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`;
    if (key.includes('\u0000')) return at;
    const found = nulCharacterAt(child, at);
    if (found !== null) return found;
  }
  return null;
}

/**
 * Postgres text cannot hold U+0000 (the insert or the query fails): a NUL anywhere in a
 * body, query string or path parameter is a validation error, never a database error (500).
 */
function rejectingNul(validate: ValidateFunction): ValidateFunction {
  const wrapped = ((data: unknown) => {
    const valid = validate(data);
    wrapped.errors = validate.errors;
    if (!valid) return false;
    const at = nulCharacterAt(data);
    if (at === null) return true;
    const error: ErrorObject = { keyword: 'nul', instancePath: at, schemaPath: '#', params: {}, message: 'must not contain the NUL character (U+0000)' };
    wrapped.errors = [error];
    return false;
  }) as ValidateFunction;
  return wrapped;
}

/**
 * Bodies are validated strictly (a string is not a number, unknown fields are an
 * error); query strings and path parameters are text, so they are coerced.
 */
export function installValidators(app: FastifyInstance) {
  const strict = new Ajv({ allErrors: true, coerceTypes: false, useDefaults: true, removeAdditional: false, strict: false });
  const coercing = new Ajv({ allErrors: true, coerceTypes: true, useDefaults: true, removeAdditional: false, strict: false });
  (addFormats as unknown as (a: Ajv) => void)(strict);
  (addFormats as unknown as (a: Ajv) => void)(coercing);
  app.setValidatorCompiler(({ schema, httpPart }) => rejectingNul((httpPart === 'body' ? strict : coercing).compile(schema)));
}
