// keyledger/express, ES module entry point: the CommonJS module (express.js) re-exported.
import cjs from './express.js';

export const { keyledgerMiddleware, captureRawBody, gateUpgrades } = cjs;
export default cjs;
