export {
  bearerInterceptors,
  PROTOCOLS,
  type Protocol,
  parseProtocol,
  type TransportOptions,
} from "./transport-options.js";
