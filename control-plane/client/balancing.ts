/**
 * How the one control-plane client spreads its calls over several control planes: the
 * grpc-js channel options and service config built from CONTROL_PLANE_ADDRESS.
 *
 * - `veza_health_checked` (health-checked.ts) on top: a control plane whose grpc.health.v1
 *   status is not SERVING (a dependency down, or draining at shutdown) leaves the rotation as
 *   soon as it says so, over a Health.Watch stream per connection, and comes back when it says
 *   SERVING. When no connected one serves, all connected ones take calls (each answers what it
 *   can); when none is connected, a call fails at once with UNAVAILABLE naming every address
 *   and its state.
 * - `round_robin` over every address the target resolves to. A subchannel whose connection
 *   is refused or lost (a control plane that died or stopped) leaves the rotation at once,
 *   and keepalive pings find a peer that vanished without closing its connections.
 * - `outlier_detection` around it ejects, for a while, a control plane that fails nearly
 *   every call while it still accepts connections (its database gone, say). grpc-js counts
 *   any non-OK status as a failure, so the threshold is high (90% of at least 20 calls in a
 *   second) and at most half the control planes are ever ejected.
 * - Retries: only the rpcs listed in IDEMPOTENT_RPCS are retried, on UNAVAILABLE (a
 *   control plane that went away mid-call, or one that said it cannot serve), up to three
 *   attempts inside the call's own deadline, with a retry budget (`retryThrottling`) so a
 *   dead cluster is not hammered. grpc-js commits a call once the server's headers arrive and
 *   retries it no more; the client's unary adapter (index.ts) asks an idempotent call again
 *   once when the connection drops after them. Everything else is sent once: logins (each creates a
 *   session), chat sends, state changes. grpc-js still replays a call transparently when
 *   it provably never reached a server (the stream was refused before any byte), which is
 *   safe for any rpc.
 */
import type { ChannelOptions } from '@grpc/grpc-js';
import { parseControlPlaneTarget } from '../../common/index.js';
import { HEALTH_CHECKED_POLICY, registerHealthCheckedPolicy } from './health-checked.js';

/**
 * Reads and other calls whose repetition changes nothing. Repeating a read is harmless;
 * IssueListenerToken only signs a short-lived token (no row is written).
 */
export const IDEMPOTENT_RPCS: Readonly<Record<string, readonly string[]>> = {
  'veza.auth.AuthService': ['ValidateToken', 'GetUserInfo', 'GetJwks'],
  'veza.stream.StreamService': [
    'GetStreamInfo',
    'ListStreams',
    'GetTrack',
    'ListTracks',
    'IssueListenerToken',
  ],
  'veza.chat.ChatService': ['GetMessages', 'ListModerationQueue'],
  'veza.notification.NotificationService': ['GetNotifications', 'ListFollowing'],
  'veza.analytics.AnalyticsService': ['GetAnalytics', 'GetMetrics'],
  'grpc.health.v1.Health': ['Check'],
};

const seconds = (s: number) => ({ seconds: Math.floor(s), nanos: Math.round((s % 1) * 1e9) });

export function balancedServiceConfig(): Record<string, unknown> {
  return {
    loadBalancingConfig: [
      {
        [HEALTH_CHECKED_POLICY]: {
          child_policy: [
            {
              outlier_detection: {
                interval: seconds(1),
                base_ejection_time: seconds(5),
                max_ejection_time: seconds(60),
                max_ejection_percent: 50,
                failure_percentage_ejection: {
                  threshold: 90,
                  enforcement_percentage: 100,
                  minimum_hosts: 2,
                  request_volume: 20,
                },
                child_policy: [{ round_robin: {} }],
              },
            },
          ],
        },
      },
    ],
    methodConfig: [
      {
        name: Object.entries(IDEMPOTENT_RPCS).flatMap(([service, methods]) =>
          methods.map((method) => ({ service, method })),
        ),
        retryPolicy: {
          maxAttempts: 3,
          initialBackoff: '0.05s',
          maxBackoff: '0.5s',
          backoffMultiplier: 2,
          retryableStatusCodes: ['UNAVAILABLE'],
        },
      },
    ],
    retryThrottling: { maxTokens: 20, tokenRatio: 0.2 },
  };
}

/** The channel target and options for CONTROL_PLANE_ADDRESS (one address, a list, or a dns: name). */
export function balancedChannel(address: string): { target: string; options: ChannelOptions } {
  registerHealthCheckedPolicy();
  const { channelTarget } = parseControlPlaneTarget(address);
  return {
    target: channelTarget,
    options: {
      'grpc.service_config': JSON.stringify(balancedServiceConfig()),
      'grpc.enable_retries': 1,
      // A peer that vanished without closing its connections is found within ~15 s.
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      // A control plane that comes back is reconnected to within a second or two.
      'grpc.initial_reconnect_backoff_ms': 250,
      'grpc.max_reconnect_backoff_ms': 2_000,
    },
  };
}
