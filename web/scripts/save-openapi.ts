// Saves the service's OpenAPI document and regenerates the console's API types from it (npm run api:types).
import { writeFileSync } from 'node:fs';
import { documentText, GENERATED_TYPES, SAVED_OPENAPI, servedOpenApiDocument, typesOf } from '../../test/support/openapi-document.ts';

const doc = await servedOpenApiDocument();
writeFileSync(SAVED_OPENAPI, documentText(doc));
writeFileSync(GENERATED_TYPES, await typesOf(doc));
console.log(`wrote ${SAVED_OPENAPI} and ${GENERATED_TYPES}`);
