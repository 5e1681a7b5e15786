import { defineConfig } from '@hey-api/openapi-ts';

// `npm run gen:api` writes the wire types of the HTTP API into src/api/generated/ from
// openapi.json, the committed snapshot of the server's schema. Write the snapshot and
// regenerate in one go with `python -m tracker_server.http.openapi_export` (from the
// repository root); tests/test_dashboard_api.py fails when either is stale.
export default defineConfig({
  input: 'openapi.json',
  output: { path: 'src/api/generated' },
  plugins: ['@hey-api/typescript'],
});
