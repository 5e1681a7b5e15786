import react from '@vitejs/plugin-react';
import { defineConfig } from 'vitest/config';

// The bundle is committed and checked byte for byte by tests/test_dashboard_bundle.py,
// so every output name is derived from content only (no timestamps, no absolute paths).
export default defineConfig({
  plugins: [react()],
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    target: 'es2022',
    reportCompressedSize: false,
    // The polyfill is only needed for browsers without <link rel="modulepreload">.
    modulePreload: { polyfill: false },
    rolldownOptions: {
      output: {
        entryFileNames: 'assets/app-[hash].js',
        chunkFileNames: 'assets/[name]-[hash].js',
        // The stylesheet is named after the app, not after index.html.
        assetFileNames: (asset) =>
          asset.names.some((n) => n.endsWith('.css')) ? 'assets/app-[hash][extname]' : 'assets/[name]-[hash][extname]',
      },
    },
  },
  server: {
    host: '127.0.0.1',
    proxy: { '/api': 'http://127.0.0.1:8080' },
  },
  test: {
    // Pure logic runs in node; component tests opt into jsdom with a file comment.
    environment: 'node',
    include: ['src/**/*.test.{ts,tsx}'],
  },
});
