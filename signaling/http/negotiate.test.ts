import { describe, expect, it } from 'vitest';
import { prefersHtml } from './negotiate.js';

describe('prefersHtml', () => {
  it.each([
    ['text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', true],
    ['text/html', true],
    ['application/json', false],
    ['*/*', false],
    ['', false],
    ['application/json, text/html;q=0.5', false],
    ['text/*;q=0.9, application/json;q=0.5', true],
    ['text/html;q=0', false],
  ])('%j -> %s', (accept, expected) => {
    expect(prefersHtml(accept)).toBe(expected);
  });
});
