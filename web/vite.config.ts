import { defineConfig } from "vite";

// The bundle is committed inside the Python package (tracklet/server/static) so `pip install`
// needs no Node. scripts/check_web_bundle.sh rebuilds it and fails when the committed copy differs,
// so the build must be deterministic: content-hashed names, no timestamps, no source maps.
export default defineConfig({
  base: "/",
  build: {
    outDir: process.env.TRACKLET_WEB_OUT ?? "../tracklet/server/static",
    emptyOutDir: true,
    sourcemap: false,
    target: "es2022",
    reportCompressedSize: false,
  },
  // `npm run dev` asks a running `tracklet ui` (started with the same TRACKLET_UI_TOKEN) for the
  // API: it answers only its own Host name and requests that carry its token.
  server: {
    proxy: {
      "/api": {
        target: process.env.TRACKLET_API ?? "http://127.0.0.1:8765",
        changeOrigin: true,
        headers: process.env.TRACKLET_UI_TOKEN ? { Authorization: `Bearer ${process.env.TRACKLET_UI_TOKEN}` } : {},
      },
    },
  },
});
