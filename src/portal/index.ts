/**
 * The Mesh portal (Step 5, docs/portal.md): the server, the transaction handlers, the notary log and the
 * storage interface. The client and federation live next to these (client.ts, federation.ts).
 */
export {
  DEFAULT_MAX_BODY,
  HEALTH_PATH,
  PORTAL_PATH,
  isLoopback,
  startPortalServer,
  type PortalServer,
  type PortalServerOptions,
} from './server.js';
export {
  DEFAULT_QUOTAS,
  PENDING_QUERY_SKEW_MS,
  PORTAL_PROTOCOL_VERSION,
  PortalErrorCode,
  TRANSACTIONS,
  TransactionError,
  errorBody,
  handle,
  handleBody,
  toTransactionError,
  type PortalErrorCodeValue,
  type PortalQuotas,
  type TransactionContext,
  type TransactionName,
  type TransactionResult,
} from './transactions.js';
export {
  LogAppendConflict,
  MAX_LOG_ENTRIES,
  Notary,
  makeLogLine,
  parseLogLine,
  signedHeadPayload,
  type AppendedEntry,
  type NotaryBody,
  type NotaryOptions,
} from './notary.js';
export * from './storage.js';
