/**
 * Rate limits on the account entry points: logins per client IP and per account, and
 * registrations per client IP, over LOGIN_LIMIT_WINDOW_S.
 */
import { RateLimitedError } from '../../common/contracts/index.js';
import type { Config } from '../../common/index.js';
import type { RateLimiter, RateRule } from '../../common/ports/index.js';

export interface AccountRules {
  loginPerIp: RateRule;
  loginPerAccount: RateRule;
  registerPerIp: RateRule;
}

export function accountRules(
  config: Pick<
    Config,
    'LOGIN_LIMIT_PER_IP' | 'LOGIN_LIMIT_PER_ACCOUNT' | 'LOGIN_LIMIT_WINDOW_S' | 'REGISTER_LIMIT_PER_IP'
  >,
): AccountRules {
  const durationS = config.LOGIN_LIMIT_WINDOW_S;
  return {
    loginPerIp: { name: 'login-ip', points: config.LOGIN_LIMIT_PER_IP, durationS },
    loginPerAccount: { name: 'login-account', points: config.LOGIN_LIMIT_PER_ACCOUNT, durationS },
    registerPerIp: { name: 'register-ip', points: config.REGISTER_LIMIT_PER_IP, durationS },
  };
}

/** Spends one point; throws RESOURCE_EXHAUSTED "too many <what>; retry in N s" when none is left. */
export async function spend(limiter: RateLimiter, rule: RateRule, key: string, what: string): Promise<void> {
  const decision = await limiter.consume(rule, key);
  if (decision.allowed) return;
  const seconds = Math.max(1, Math.ceil(decision.retryAfterMs / 1000));
  throw new RateLimitedError(`too many ${what}; retry in ${seconds} s`, decision.retryAfterMs);
}
