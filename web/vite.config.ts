// Haven's web app build. The output (web/dist) is served by the haven binary under a
// Content Security Policy of `default-src 'self'` with Trusted Types required, so the build
// must not produce inline scripts or styles: Vite emits the entry as an external module
// script and the CSS as a stylesheet link, and module preloading is done by the bundle.
import { defineConfig } from 'vite';

export default defineConfig({
  oxc: {
    jsx: { runtime: 'automatic', importSource: 'preact' },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // No source maps in what the binary serves: they would double the size for no user.
    sourcemap: false,
    // Small assets are inlined as data: URLs by default, which the CSP refuses.
    assetsInlineLimit: 0,
    // The script budget of the portal's first load (issue: under 200 KB compressed).
    chunkSizeWarningLimit: 200,
  },
});
