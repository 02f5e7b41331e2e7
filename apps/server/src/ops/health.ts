import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  type Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "@switchboard/proto/gen/grpc/health/v1/health_pb";

/**
 * The serving status of the server ("") and of each of its services, for gRPC health checking
 * (grpc/grpc doc/health-checking.md). Every service starts SERVING; {@link shutdown} turns all of
 * them NOT_SERVING at once, and watchers see the change.
 */
export class HealthStatus {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly listeners = new Set<() => void>();

  constructor(services: Iterable<string>) {
    this.statuses.set("", ServingStatus.SERVING);
    for (const service of services) this.statuses.set(service, ServingStatus.SERVING);
  }

  /** The status of `service` ("" for the whole server); undefined for an unknown service. */
  get(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  /** Sets the status of `service` ("" for the server) and wakes the watchers. */
  set(service: string, status: ServingStatus): void {
    this.statuses.set(service, status);
    for (const listener of this.listeners) listener();
  }

  /** Every service, and the server, NOT_SERVING: the server is shutting down. */
  shutdown(): void {
    for (const service of this.statuses.keys())
      this.statuses.set(service, ServingStatus.NOT_SERVING);
    for (const listener of this.listeners) listener();
  }

  /** Resolves at the next change; rejects with the signal's reason when it aborts. */
  changed(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        this.listeners.delete(done);
        signal.removeEventListener("abort", aborted);
        resolve();
      };
      const aborted = () => {
        this.listeners.delete(done);
        reject(signal.reason);
      };
      if (signal.aborted) {
        aborted();
        return;
      }
      this.listeners.add(done);
      signal.addEventListener("abort", aborted, { once: true });
    });
  }
}

/**
 * grpc.health.v1.Health: Check answers the status of a service ("" for the server), NotFound for
 * an unknown one; Watch sends the status at once and again at every change, SERVICE_UNKNOWN for
 * an unknown service (as the spec asks), until the client cancels or the server stops.
 */
export function createHealthService(status: HealthStatus): ServiceImpl<typeof Health> {
  return {
    check(req) {
      const s = status.get(req.service);
      if (s === undefined) {
        throw new ConnectError(`unknown service ${req.service}`, Code.NotFound);
      }
      return { status: s };
    },
    async *watch(req, ctx) {
      let last: ServingStatus | undefined;
      for (;;) {
        const s = status.get(req.service) ?? ServingStatus.SERVICE_UNKNOWN;
        if (s !== last) {
          last = s;
          yield { status: s };
        }
        await status.changed(ctx.signal);
      }
    },
  };
}

export { ServingStatus };
