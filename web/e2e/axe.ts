/**
 * The axe-core audit the browser tests share: WCAG 2.0/2.1 A and AA rules and axe's best
 * practices, in both the light and the dark colour scheme, plus the outline basics (one h1, a
 * document title naming the page). The page's context must bypass the CSP (axe is injected as
 * an inline script).
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { AxeResults, RunOptions } from 'axe-core';
import type { Page } from 'playwright-core';
import { expect } from 'vitest';

/**
 * WCAG 2.0/2.1 A and AA, plus axe's best practices: its landmark and heading rules (content
 * inside landmarks, one main, heading order) are tagged only as best practice.
 */
export const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'];
export const SCHEMES = ['light', 'dark'] as const;

export interface Violation {
  id: string;
  impact: string | null;
  help: string;
  helpUrl: string;
  nodes: Array<{ target: string; summary: string }>;
}

/** One line per failing node: the rule, its impact and help, the element and what axe found. */
export function describeViolations(state: string, violations: Violation[]): string[] {
  return violations.flatMap((violation) =>
    violation.nodes.map(
      (node) =>
        `${state}: ${violation.id} (${violation.impact}) ${violation.help} [${violation.helpUrl}]\n` +
        `    at ${node.target}: ${node.summary.replace(/\s*\n\s*/g, ' / ')}`,
    ),
  );
}

export async function axeViolations(page: Page, axeSource: string): Promise<Violation[]> {
  if (!(await page.evaluate(() => 'axe' in window))) await page.addScriptTag({ content: axeSource });
  const options: RunOptions = { runOnly: { type: 'tag', values: AXE_TAGS }, resultTypes: ['violations'] };
  return page.evaluate(async (runOptions) => {
    const { axe } = window as unknown as {
      axe: { run(context: Document, options: RunOptions): Promise<AxeResults> };
    };
    const results = await axe.run(document, runOptions);
    return results.violations.map((violation) => ({
      id: violation.id,
      impact: violation.impact ?? null,
      help: violation.help,
      helpUrl: violation.helpUrl,
      nodes: violation.nodes.map((node) => ({
        target: node.target.map((part) => (Array.isArray(part) ? part.join(' >>> ') : part)).join(' '),
        summary: node.failureSummary ?? '',
      })),
    }));
  }, options);
}

let axeSource: Promise<string> | null = null;

/** axe-core's browser build, read once. */
export function loadAxe(): Promise<string> {
  axeSource ??= readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
  return axeSource;
}

/**
 * Audits the page as it is now in both colour schemes (prefers-color-scheme emulated), and
 * checks its outline basics: exactly one h1 and a title naming the page.
 */
export async function audit(page: Page, state: string, title: RegExp): Promise<void> {
  await expect(page.locator('h1').count(), `${state}: one h1`).resolves.toBe(1);
  await expect(page.title(), `${state}: the document title`).resolves.toMatch(title);
  const source = await loadAxe();
  const problems: string[] = [];
  const backgrounds = new Set<string>();
  for (const colorScheme of SCHEMES) {
    await page.emulateMedia({ colorScheme });
    backgrounds.add(await page.evaluate(() => getComputedStyle(document.body).backgroundColor));
    problems.push(...describeViolations(`${state} (${colorScheme})`, await axeViolations(page, source)));
  }
  await page.emulateMedia({ colorScheme: 'light' });
  expect(backgrounds.size, 'the dark scheme applies').toBe(2);
  expect(problems, `axe violations on ${state}`).toEqual([]);
}
