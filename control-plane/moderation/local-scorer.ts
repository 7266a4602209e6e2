/**
 * The built-in scorer: word lists matched through the usual disguises (normalize.ts),
 * plus link-spam and flood heuristics. Deterministic, in-process and fast, so it is both
 * the default and the fallback of the external scorer.
 */
import { candidateTokenSequences, collapseRuns, foldText, hasRuns } from './normalize.js';
import { type ContentScorer, combineScores, type ScoreContext, type ScoreResult } from './scorer.js';
import { BUILT_IN_LISTS, type WordList } from './wordlists.js';

export const REASON_LANGUAGE = 'offensive language';
export const REASON_LINKS = 'link spam';
export const REASON_FLOOD = 'flood';
export const REASON_REPEAT = 'repeated message';

interface CompiledEntry {
  kind: 'exact' | 'prefix' | 'infix';
  /** One token, or several for a phrase (phrases are exact, token by token). */
  tokens: string[];
  collapsed: string[];
  weight: number;
  label: string;
}

function compile(list: WordList): CompiledEntry[] {
  return list.entries.map((entry) => {
    const infix = entry.pattern.startsWith('*') && entry.pattern.endsWith('*');
    const prefix = !infix && entry.pattern.endsWith('*');
    const stem = entry.pattern.replace(/^\*|\*$/g, '');
    const tokens = foldText(stem).split(/\s+/u);
    return {
      kind: infix ? 'infix' : prefix ? 'prefix' : 'exact',
      tokens,
      collapsed: tokens.map(collapseRuns),
      weight: entry.weight,
      label: `${list.language}:${stem}`,
    };
  });
}

/** A token of a reading, with its collapsed form worked out once (every entry compares it). */
interface Token {
  text: string;
  /** The token with its runs collapsed, when it has any. */
  collapsed: string | null;
}

const prepare = (tokens: readonly string[]): Token[] =>
  tokens.map((text) => ({ text, collapsed: hasRuns(text) ? collapseRuns(text) : null }));

function test(kind: CompiledEntry['kind'], candidate: string, target: string): boolean {
  if (kind === 'exact') return candidate === target;
  return kind === 'prefix' ? candidate.startsWith(target) : candidate.includes(target);
}

function tokenMatches(
  kind: CompiledEntry['kind'],
  token: Token,
  stem: string,
  collapsedStem: string,
): boolean {
  // Stretched letters are compared collapsed on both sides ("fuuuck", "asss"); a word
  // without repeats is only compared as written, so "as" never reads as "ass".
  return (
    test(kind, token.text, stem) || (token.collapsed !== null && test(kind, token.collapsed, collapsedStem))
  );
}

function entryMatches(entry: CompiledEntry, tokens: readonly Token[]): boolean {
  const width = entry.tokens.length;
  for (let start = 0; start + width <= tokens.length; start++) {
    let all = true;
    for (let i = 0; i < width && all; i++) {
      const token = tokens[start + i];
      const kind = width === 1 ? entry.kind : 'exact';
      all = token !== undefined && tokenMatches(kind, token, entry.tokens[i] ?? '', entry.collapsed[i] ?? '');
    }
    if (all) return true;
  }
  return false;
}

const URL_PATTERN =
  /\b(?:https?:\/\/\S+|www\.\S+|[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|net|org|io|ly|gg|co|me|xyz|ru|info|biz|link|click|top|tk|fr|de|uk|app|dev|tv|live|to|cc|us|at|gd|id)\b(?:\/\S*)?)/giu;

const SHORTENERS = new Set([
  'bit.ly',
  'tinyurl.com',
  't.co',
  'goo.gl',
  'ow.ly',
  'is.gd',
  'buff.ly',
  'cutt.ly',
  'rb.gy',
  'shorturl.at',
  'tiny.cc',
  't.ly',
  's.id',
  'rebrand.ly',
  'bl.ink',
  'shorte.st',
  'adf.ly',
]);

function hostOf(url: string): string {
  return (
    url
      .replace(/^https?:\/\//i, '')
      .replace(/^www\./i, '')
      .split(/[/?#:]/)[0]
      ?.toLowerCase() ?? ''
  );
}

export function scoreLinks(text: string): ScoreResult {
  const urls = text.normalize('NFKC').match(URL_PATTERN) ?? [];
  if (urls.length === 0) return { score: 0, reasons: [], matches: [] };
  const shorteners = urls.map(hostOf).filter((host) => SHORTENERS.has(host));
  let score = 0;
  if (shorteners.length > 0) score = 0.75;
  if (urls.length >= 5) score = Math.max(score, 0.95);
  else if (urls.length >= 3) score = Math.max(score, 0.8);
  else if (urls.length === 2) score = Math.max(score, 0.3);
  if (score === 0) return { score: 0, reasons: [], matches: [] };
  return { score, reasons: [REASON_LINKS], matches: [...new Set(urls.map(hostOf))] };
}

/** Long runs of one character, one short pattern over and over, one word repeated, or one huge token. */
export function scoreFlood(text: string): ScoreResult {
  const matches: string[] = [];
  let score = 0;
  if (/(\S)\1{15,}/u.test(text)) {
    score = Math.max(score, 0.75);
    matches.push('character run');
  }
  const pattern = /(\S{2,8}?)\1{9,}/u.exec(text);
  if (pattern && pattern[0].length >= 30) {
    score = Math.max(score, 0.75);
    matches.push('repeated pattern');
  }
  const words = text.toLowerCase().split(/\s+/u).filter(Boolean);
  if (words.length >= 10) {
    const counts = new Map<string, number>();
    for (const word of words) counts.set(word, (counts.get(word) ?? 0) + 1);
    const top = Math.max(...counts.values());
    if (top / words.length >= 0.6) {
      score = Math.max(score, 0.8);
      matches.push('repeated word');
    }
  }
  if (words.some((word) => word.length > 80 && !/^(?:https?:\/\/|www\.)/i.test(word))) {
    score = Math.max(score, 0.75);
    matches.push('long token');
  }
  return score === 0 ? { score: 0, reasons: [], matches: [] } : { score, reasons: [REASON_FLOOD], matches };
}

const comparable = (text: string): string => foldText(text).replace(/\s+/gu, ' ').trim();

/** The third identical message in a row is a flood even when each one is fine. */
export function scoreRepeat(text: string, context: ScoreContext | undefined): ScoreResult {
  const recent = context?.recent ?? [];
  const mine = comparable(text);
  const same = recent.filter((previous) => comparable(previous) === mine).length;
  return same >= 2
    ? { score: 0.75, reasons: [REASON_REPEAT], matches: [] }
    : { score: 0, reasons: [], matches: [] };
}

export class LocalScorer implements ContentScorer {
  private readonly entries: CompiledEntry[];

  constructor(lists: readonly WordList[] = BUILT_IN_LISTS) {
    this.entries = lists.flatMap(compile);
  }

  /** Synchronous, for the fallback path and tests. */
  scoreNow(text: string, context?: ScoreContext): ScoreResult {
    return combineScores([
      this.scoreWords(text),
      scoreLinks(text),
      scoreFlood(text),
      scoreRepeat(text, context),
    ]);
  }

  async score(text: string, context?: ScoreContext): Promise<ScoreResult> {
    return this.scoreNow(text, context);
  }

  private scoreWords(text: string): ScoreResult {
    const readings = candidateTokenSequences(text).map(prepare);
    const found = this.entries.filter((entry) => readings.some((tokens) => entryMatches(entry, tokens)));
    if (found.length === 0) return { score: 0, reasons: [], matches: [] };
    const combined = combineScores(found.map((entry) => ({ score: entry.weight, reasons: [] })));
    return { score: combined.score, reasons: [REASON_LANGUAGE], matches: found.map((entry) => entry.label) };
  }
}
