// keyledger for Node.js, ES module entry point: the CommonJS module (index.js) re-exported,
// so `import { Vault } from 'keyledger'` and `require('keyledger')` share one loaded
// library and one class identity (an error from one is `instanceof` the other's class).
import cjs from './index.js';

export const {
  Vault,
  KeyLedgerError,
  looksLikeKey,
  redact,
  version,
  generateMasterKey,
  signRequest,
  signWebhook,
  verifyWebhook,
  libraryPath,
} = cjs;
export default cjs;
