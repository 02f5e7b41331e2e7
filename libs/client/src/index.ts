export { type Backoff, type BackoffOptions, createBackoff, DEFAULT_BACKOFF } from "./backoff.js";
export { createFailoverTransport } from "./failover-transport.js";
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
