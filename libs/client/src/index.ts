export { type Backoff, type BackoffOptions, createBackoff, DEFAULT_BACKOFF } from "./backoff.js";
export {
  type ChatSession,
  type ChatSessionOptions,
  type ChatSessionState,
  createChatSession,
  type SendRetry,
} from "./chat-session.js";
export { describeError, type ErrorDescription } from "./describe-error.js";
export { createFailoverTransport } from "./failover-transport.js";
export { type AfterReset, type HistoryReset, historyResetOf } from "./history-reset.js";
export { requestRulesInterceptor, roomNameProblem, ruleUpperBound } from "./request-rules.js";
export {
  type ResumableSubscriptionOptions,
  type ResumableSubscriptionRequest,
  type SubscriptionState,
  type SubscriptionStateDetail,
  subscribeResumable,
} from "./resumable-subscription.js";
export {
  bearerInterceptors,
  PROTOCOLS,
  type Protocol,
  parseProtocol,
  type TransportOptions,
} from "./transport-options.js";
