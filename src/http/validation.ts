import { createRequire } from 'node:module';
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

/** A validator compiled on its first call (its errors are the compiled one's). */
function compiledOnFirstUse(compile: () => ValidateFunction): ValidateFunction {
  let compiled: ValidateFunction | undefined;
  const wrapped = ((data: unknown) => {
    compiled ??= compile();
    const valid = compiled(data);
    wrapped.errors = compiled.errors;
    return valid;
  }) as ValidateFunction;
  return wrapped;
}

/**
 * Response serializers (fast-json-stringify, Fastify's own compiler with the shared schemas)
 * compiled at a route's first answer with that status, not at start.
 */
export function lazySerializers(): (externalSchemas: unknown, options: unknown) => (route: unknown) => (data: unknown) => string {
  const fromFastify = createRequire(createRequire(import.meta.url).resolve('fastify'));
  const selector = (fromFastify('@fastify/fast-json-stringify-compiler') as { SerializerSelector: () => (s: unknown, o: unknown) => (route: unknown) => (data: unknown) => string }).SerializerSelector();
  return (externalSchemas, options) => {
    const compile = selector(externalSchemas, options);
    return (route) => {
      let serialize: ((data: unknown) => string) | undefined;
      return (data) => (serialize ??= compile(route))(data);
    };
  };
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
  // Compiled at a route's first request, not at start: a start compiles none of the hundreds of schemas.
  app.setValidatorCompiler(({ schema, httpPart }) => rejectingNul(compiledOnFirstUse(() => (httpPart === 'body' ? strict : coercing).compile(schema))));
}
