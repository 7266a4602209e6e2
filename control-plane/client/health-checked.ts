/**
 * Client-side grpc.health.v1 checking for the control-plane channel, which grpc-js 1.14 lacks:
 * a load-balancing policy, `veza_health_checked`, that sits above outlier_detection and
 * round_robin and hides every control plane whose health is not SERVING from them.
 *
 * Why a policy and not one channel per address picked by hand: grpc-js already does the hard
 * parts per channel (resolving a DNS name to every control plane and re-resolving it, reconnect
 * backoff, keepalive, the retry policy that moves an idempotent call to another address, outlier
 * ejection). A policy keeps all of that and adds only health. It uses the hooks grpc-js gives
 * policies for this (the same ones outlier_detection uses): each subchannel it hands down is
 * wrapped, the wrapper reports itself unhealthy while its control plane is not SERVING, and
 * round_robin's pick_first leaves treat an unhealthy subchannel as TRANSIENT_FAILURE, so it leaves
 * the rotation while its connection stays up.
 *
 * Each wrapper watches health the way gRPC's own client health checking does: a Health.Watch
 * stream for the whole server ('') over that subchannel's own connection (`getChannel()`), opened
 * whenever the connection is READY. The server pushes every change, so a control plane that turns
 * NOT_SERVING (a dependency lost, or draining at shutdown) stops receiving calls as soon as the
 * message arrives, and takes calls again when it says SERVING. Until its first answer a new
 * connection counts as serving, so the first calls of a process do not fail; a server without the
 * health service (UNIMPLEMENTED) counts as serving for good. A stream that ends while the
 * connection stays up is opened again after a backoff, keeping the last status meanwhile.
 *
 * When no connected control plane is SERVING, all the connected ones take calls again (see
 * `#weigh`). When none is connected, the channel's picker fails a call at once with UNAVAILABLE
 * naming every address and its state (`NO_CONTROL_PLANE_AVAILABLE`).
 */
import {
  type CallOptions,
  type ChannelOptions,
  type ClientReadableStream,
  type ClientUnaryCall,
  connectivityState,
  credentials,
  experimental,
  type Client as GrpcClient,
  type Metadata,
  makeGenericClientConstructor,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import { service as healthServiceDefinition } from 'grpc-health-check';

export const HEALTH_CHECKED_POLICY = 'veza_health_checked';

/** The start of the UNAVAILABLE details a call gets when no control plane can take it. */
export const NO_CONTROL_PLANE_AVAILABLE = 'no control plane can take the call';

export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

/** The grpc.health.v1 client (the control plane serves the service). */
export interface RawHealthClient extends GrpcClient {
  check(
    request: { service: string },
    metadata: Metadata,
    options: Partial<CallOptions>,
    callback: (error: ServiceError | null, response: { status: ServingStatus }) => void,
  ): ClientUnaryCall;
  watch(request: { service: string }): ClientReadableStream<{ status: ServingStatus }>;
}

export const HealthClient = makeGenericClientConstructor(
  healthServiceDefinition,
  'grpc.health.v1.Health',
) as unknown as new (
  address: string,
  creds: ReturnType<typeof credentials.createInsecure>,
  options?: ChannelOptions & { channelOverride?: unknown },
) => RawHealthClient;

const { BaseSubchannelWrapper, ChildLoadBalancerHandler, UnavailablePicker, PickResultType } = experimental;
type SubchannelInterface = experimental.SubchannelInterface;
type ChannelControlHelper = experimental.ChannelControlHelper;
type Picker = experimental.Picker;
type PickArgs = experimental.PickArgs;
type PickResult = experimental.PickResult;
type TypedLoadBalancingConfig = experimental.TypedLoadBalancingConfig;
type Endpoint = experimental.Endpoint;

const WATCH_RETRY_MIN_MS = 250;
const WATCH_RETRY_MAX_MS = 2_000;

/** What one control plane's health watch knows; `healthy` is what the balancer acts on. */
type WatchState =
  | { kind: 'no-answer-yet' }
  | { kind: 'status'; status: ServingStatus }
  | { kind: 'no-health-service' };

class HealthWatchedSubchannel extends BaseSubchannelWrapper {
  #state: WatchState = { kind: 'no-answer-yet' };
  #call: ClientReadableStream<{ status: ServingStatus }> | null = null;
  #client: RawHealthClient | null = null;
  #retry: NodeJS.Timeout | null = null;
  #retryMs = WATCH_RETRY_MIN_MS;
  #started = false;
  #destroyed = false;
  readonly #onChange: () => void;
  readonly #stateListener = (
    _subchannel: SubchannelInterface,
    _previous: connectivityState,
    next: connectivityState,
  ) => {
    if (next === connectivityState.READY) this.#watch();
    else this.#forget();
    this.#onChange();
  };

  /** `onChange`: its health or its connection changed (the policy weighs all of them again). */
  constructor(child: SubchannelInterface, onChange: () => void) {
    super(child);
    this.#onChange = onChange;
  }

  /** Unreferenced by every policy above: its watch is stopped. */
  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** Connected, and SERVING as far as it said (no answer yet, or no health service, counts as serving). */
  get servingAndReady(): boolean {
    if (this.getConnectivityState() !== connectivityState.READY) return false;
    return this.#state.kind !== 'status' || this.#state.status === 'SERVING';
  }

  /** Takes it out of the rotation unless it serves; `panic`: none serves, so every connected one takes calls. */
  apply(panic: boolean): void {
    this.setHealthy(panic || this.#state.kind !== 'status' || this.#state.status === 'SERVING');
  }

  /** The subchannel the channel calls on (pickers hand out the unwrapped one, as grpc-js asks). */
  get wrapped(): SubchannelInterface {
    return this.child;
  }

  /** This control plane's state for an error message: its health when connected, else the connection's. */
  describe(): string {
    const connection = this.getConnectivityState();
    if (connection !== connectivityState.READY) return connectivityState[connection];
    const state = this.#state;
    if (state.kind === 'status') return state.status;
    return state.kind === 'no-health-service' ? 'READY (no health service)' : 'READY';
  }

  override ref(): void {
    super.ref();
    if (this.#started) return;
    this.#started = true;
    this.child.addConnectivityStateListener(this.#stateListener);
    if (this.child.getConnectivityState() === connectivityState.READY) this.#watch();
  }

  protected override destroy(): void {
    super.destroy();
    this.#destroyed = true;
    this.child.removeConnectivityStateListener(this.#stateListener);
    this.#stop();
    // The others are weighed again without it (it may have been the only one serving), once the
    // policy that let go of it is done with its own update.
    queueMicrotask(this.#onChange);
  }

  #watch(): void {
    if (this.#destroyed || this.#call || this.#state.kind === 'no-health-service') return;
    this.#client ??= new HealthClient('health-watch', credentials.createInsecure(), {
      channelOverride: this.child.getChannel(),
    });
    const call = this.#client.watch({ service: '' });
    this.#call = call;
    call.on('data', ({ status: serving }: { status: ServingStatus }) => {
      this.#retryMs = WATCH_RETRY_MIN_MS;
      this.#set({ kind: 'status', status: serving });
    });
    // The stream ends with its status: the server ended it (draining), or the connection went.
    call.on('error', (error: { code?: number }) => this.#ended(call, error.code));
    call.on('status', ({ code }: { code: number }) => this.#ended(call, code));
  }

  #ended(call: ClientReadableStream<unknown>, code: number | undefined): void {
    if (this.#call !== call) return;
    this.#call = null;
    if (this.#destroyed || code === status.CANCELLED) return;
    if (code === status.UNIMPLEMENTED) {
      this.#set({ kind: 'no-health-service' });
      return;
    }
    // Keep the last status; ask again while the connection is up.
    if (this.child.getConnectivityState() !== connectivityState.READY) return;
    this.#retry = setTimeout(() => {
      this.#retry = null;
      if (this.child.getConnectivityState() === connectivityState.READY) this.#watch();
    }, this.#retryMs);
    this.#retry.unref();
    this.#retryMs = Math.min(this.#retryMs * 2, WATCH_RETRY_MAX_MS);
  }

  /** The connection is gone: its next one starts from no answer. */
  #forget(): void {
    this.#stop();
    if (this.#state.kind === 'status') this.#set({ kind: 'no-answer-yet' });
  }

  #stop(): void {
    if (this.#retry) clearTimeout(this.#retry);
    this.#retry = null;
    const call = this.#call;
    this.#call = null;
    call?.cancel();
  }

  #set(state: WatchState): void {
    this.#state = state;
    this.#onChange();
  }
}

/** Hands out the subchannel under this policy's wrapper, as every wrapping policy must. */
class UnwrappingPicker implements Picker {
  constructor(private readonly child: Picker) {}
  pick(args: PickArgs): PickResult {
    const result = this.child.pick(args);
    if (
      result.pickResultType === PickResultType.COMPLETE &&
      result.subchannel instanceof HealthWatchedSubchannel
    ) {
      return { ...result, subchannel: result.subchannel.wrapped };
    }
    return result;
  }
}

class HealthCheckedConfig implements TypedLoadBalancingConfig {
  constructor(readonly childPolicy: TypedLoadBalancingConfig) {}
  getLoadBalancerName(): string {
    return HEALTH_CHECKED_POLICY;
  }
  toJsonObject(): object {
    return { [HEALTH_CHECKED_POLICY]: { child_policy: [this.childPolicy.toJsonObject()] } };
  }
  static createFromJson(json: unknown): HealthCheckedConfig {
    const childPolicies = (json as { child_policy?: unknown } | null)?.child_policy;
    if (!Array.isArray(childPolicies))
      throw new Error(`${HEALTH_CHECKED_POLICY}: child_policy must be an array`);
    const child = experimental.selectLbConfigFromList(childPolicies);
    if (!child) throw new Error(`${HEALTH_CHECKED_POLICY}: no known policy in child_policy`);
    return new HealthCheckedConfig(child);
  }
}

class HealthCheckedLoadBalancer implements experimental.LoadBalancer {
  readonly #child: InstanceType<typeof ChildLoadBalancerHandler>;
  readonly #subchannels = new Set<HealthWatchedSubchannel>();

  constructor(helper: ChannelControlHelper) {
    this.#child = new ChildLoadBalancerHandler(
      experimental.createChildChannelControlHelper(helper, {
        createSubchannel: (address, args) => {
          const subchannel = new HealthWatchedSubchannel(helper.createSubchannel(address, args), () =>
            this.#weigh(),
          );
          this.#subchannels.add(subchannel);
          return subchannel;
        },
        updateState: (state, picker, errorMessage) => {
          if (state === connectivityState.TRANSIENT_FAILURE) {
            const details = this.#noneServing();
            helper.updateState(state, new UnavailablePicker({ code: status.UNAVAILABLE, details }), details);
            return;
          }
          helper.updateState(state, new UnwrappingPicker(picker), errorMessage);
        },
      }),
    );
  }

  /**
   * Which control planes take calls: the connected ones that serve. When none serves, every
   * connected one does (as Envoy's panic threshold): NOT_SERVING for the whole server means one of
   * its dependencies is down, and most calls may not need that one (reads answer while NATS is
   * gone), while those that do get a clear dependency_down answer. Refusing them all here would
   * turn a partial outage into a total one. A health change reaches round_robin through the
   * wrappers' health listeners: pick_first reports an unhealthy pick as TRANSIENT_FAILURE.
   */
  #weigh(): void {
    for (const subchannel of this.#subchannels)
      if (subchannel.destroyed) this.#subchannels.delete(subchannel);
    const live = [...this.#subchannels];
    const panic = !live.some((subchannel) => subchannel.servingAndReady);
    for (const subchannel of live) subchannel.apply(panic);
  }

  /** `no control plane can take the call: 10.0.0.1:9090 TRANSIENT_FAILURE, 10.0.0.2:9090 CONNECTING`. */
  #noneServing(): string {
    const states = new Map<string, string>();
    for (const subchannel of this.#subchannels) {
      // Wrappers the child policy let go of (an address that left the list) are not listed.
      if (subchannel.destroyed) {
        this.#subchannels.delete(subchannel);
        continue;
      }
      states.set(subchannel.getAddress(), subchannel.describe());
    }
    const listed = [...states].map(([address, state]) => `${address} ${state}`).join(', ');
    return `${NO_CONTROL_PLANE_AVAILABLE}: ${listed || 'no address resolved'}`;
  }

  updateAddressList(
    endpoints: experimental.StatusOr<Endpoint[]>,
    config: TypedLoadBalancingConfig,
    options: ChannelOptions,
    resolutionNote: string,
  ): boolean {
    if (!(config instanceof HealthCheckedConfig)) return false;
    return this.#child.updateAddressList(endpoints, config.childPolicy, options, resolutionNote);
  }
  exitIdle(): void {
    this.#child.exitIdle();
  }
  resetBackoff(): void {
    this.#child.resetBackoff();
  }
  destroy(): void {
    this.#child.destroy();
    this.#subchannels.clear();
  }
  getTypeName(): string {
    return HEALTH_CHECKED_POLICY;
  }
}

/** Makes `veza_health_checked` known to grpc-js (once per process; channels name it in their service config). */
export function registerHealthCheckedPolicy(): void {
  if (experimental.isLoadBalancerNameRegistered(HEALTH_CHECKED_POLICY)) return;
  experimental.registerLoadBalancerType(
    HEALTH_CHECKED_POLICY,
    HealthCheckedLoadBalancer,
    HealthCheckedConfig,
  );
}
