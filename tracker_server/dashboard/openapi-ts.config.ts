import { defineConfig } from '@hey-api/openapi-ts';

// `npm run gen:api` writes the wire types of the HTTP API into src/api/generated/ from
// FastAPI's schema (a running server, or a committed openapi.json given as input).
// src/api/types.ts then re-exports them instead of its hand-written copies.
export default defineConfig({
  input: 'http://127.0.0.1:8080/api/openapi.json',
  output: { path: 'src/api/generated' },
  plugins: ['@hey-api/typescript'],
});
