import { describe, expect, it } from 'vitest';
import { AnonymousBudget, budgetKey } from './anonymous-budget.js';

describe('budgetKey', () => {
  it('counts an IPv6 client by its /64, however the address is written', () => {
    expect(budgetKey('2001:db8:1:2::1')).toBe('2001:db8:1:2::/64');
    expect(budgetKey('2001:0db8:0001:0002:ffff:0:0:9')).toBe('2001:db8:1:2::/64');
    expect(budgetKey('2001:DB8:1:2:a:b:c:d')).toBe('2001:db8:1:2::/64');
    expect(budgetKey('2001:db8::7')).toBe('2001:db8:0:0::/64');
    expect(budgetKey('::1')).toBe('0:0:0:0::/64');
    expect(budgetKey('fe80:1:2:3:4:5:1.2.3.4')).toBe('fe80:1:2:3::/64');
    expect(budgetKey('64:ff9b::192.0.2.1')).toBe('64:ff9b:0:0::/64');
  });

  it('leaves IPv4 as it is, IPv4-mapped IPv6 included, and anything unparsable', () => {
    expect(budgetKey('203.0.113.7')).toBe('203.0.113.7');
    expect(budgetKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(budgetKey('::FFFF:203.0.113.7')).toBe('203.0.113.7');
    expect(budgetKey('not an address')).toBe('not an address');
  });
});

describe('AnonymousBudget', () => {
  it('shares one budget across a /64, and gives the slots back', () => {
    const budget = new AnonymousBudget(2);
    budget.take('2001:db8:1:2::1');
    budget.take('2001:db8:1:2::ffff');
    expect(() => budget.take('2001:db8:1:2:dead:beef:0:1')).toThrow(
      /at most 2 at once \(ANONYMOUS_CONNECTIONS_PER_IP\)/,
    );
    // The next /64 is another client.
    budget.take('2001:db8:1:3::1');
    budget.release('2001:db8:1:2::1');
    expect(budget.openFrom('2001:db8:1:2::42')).toBe(1);
    budget.take('2001:db8:1:2::42');
    expect(budget.openFrom('2001:db8:1:3::9')).toBe(1);
  });

  it('counts an IPv4 client the same whether it arrives mapped or not', () => {
    const budget = new AnonymousBudget(1);
    budget.take('203.0.113.7');
    expect(() => budget.take('::ffff:203.0.113.7')).toThrow(/resource_exhausted|at most 1/);
    expect(() => new AnonymousBudget(0)).toThrow(/positive integer, got 0/);
  });
});
