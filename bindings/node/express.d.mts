// Type definitions of the ES module entry point keyledger/express (express.mjs).
export * from './express.js';
import * as express from './express.js';
export default express;
