// The end-to-end messaging library in one import: message formats, this browser's device,
// and the audit log's proofs. Pages may import the modules directly; the interop script
// (crates/server/tests/browser/e2e-interop.mjs) bundles this file to run them in Chromium.
export * from './formats';
export * from './device-store';
export * from './transparency';
