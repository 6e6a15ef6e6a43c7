import type { FastifyInstance } from 'fastify';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';

/**
 * Bodies are validated strictly (a string is not a number, unknown fields are an
 * error); query strings and path parameters are text, so they are coerced.
 */
export function installValidators(app: FastifyInstance) {
  const strict = new Ajv({ allErrors: true, coerceTypes: false, useDefaults: true, removeAdditional: false, strict: false });
  const coercing = new Ajv({ allErrors: true, coerceTypes: true, useDefaults: true, removeAdditional: false, strict: false });
  (addFormats as unknown as (a: Ajv) => void)(strict);
  (addFormats as unknown as (a: Ajv) => void)(coercing);
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? strict : coercing).compile(schema));
}
