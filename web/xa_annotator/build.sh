#!/usr/bin/env bash
# Build the XA annotation page into web/xa_annotator/dist/ (not versioned), which the MONAI Label
# app serves at /xa/. Needs Node.js (tested: 20) and npm with access to the npm registry; the versions
# are those of package-lock.json (npm ci). Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")"
command -v npm >/dev/null || { echo "build.sh: npm is not installed (Debian: apt-get install nodejs npm)" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error
rm -rf dist.part && mkdir -p dist.part/codecs
ESBUILD=./node_modules/.bin/esbuild
COMMON=(--bundle --format=esm --platform=browser --target=es2022 --minify --sourcemap=linked --log-level=warning
        --external:fs --external:path --external:crypto --external:module --external:worker_threads
        --alias:events=./src/node_builtin_stub.js --alias:url=./src/node_builtin_stub.js)
# the page, and the DICOM decoding worker that the image loader starts at ./decodeImageFrameWorker.js
"$ESBUILD" src/main.js "${COMMON[@]}" --outfile=dist.part/main.js
"$ESBUILD" node_modules/@cornerstonejs/dicom-image-loader/dist/esm/decodeImageFrameWorker.js "${COMMON[@]}" \
    --outfile=dist.part/decodeImageFrameWorker.js
# the WebAssembly codecs (JPEG baseline, JPEG-LS, JPEG 2000, HTJ2K, JPEG XL), fetched by the worker from codecs/
for wasm in node_modules/@cornerstonejs/codec-*/dist/*_decode.wasm node_modules/@cornerstonejs/codec-openjph/dist/openjphjs.wasm; do
    cp "$wasm" dist.part/codecs/
done
cp index.html style.css dist.part/
rm -rf dist && mv dist.part dist
echo "built $(du -sh dist | cut -f1) in $(pwd)/dist"
