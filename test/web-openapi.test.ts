import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { documentText, GENERATED_TYPES, SAVED_OPENAPI, savedDocument, servedOpenApiDocument, typesOf } from './support/openapi-document.ts';

const STALE = 'out of date: run `npm run api:types` and commit web/src/api/openapi.json and schema.d.ts';

describe("the console's typed API client", () => {
  it('is generated from a saved copy of the OpenAPI document the service serves', async () => {
    const served = await servedOpenApiDocument();
    expect(readFileSync(SAVED_OPENAPI, 'utf8') === documentText(served), `${SAVED_OPENAPI} is ${STALE}`).toBe(true);
    expect(readFileSync(GENERATED_TYPES, 'utf8') === (await typesOf(savedDocument())), `${GENERATED_TYPES} is ${STALE}`).toBe(true);
  });
});
