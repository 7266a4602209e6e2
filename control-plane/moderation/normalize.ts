/**
 * Undoing the usual disguises of a word before it is looked up: full-width and other
 * compatibility forms, lookalike letters from other scripts, accents, leetspeak,
 * separators between letters and stretched letters.
 *
 * The output is a list of candidate token sequences: each candidate is matched as whole
 * tokens against the word lists, never as substrings, so "Scunthorpe", "class" or
 * "assistant" stay clean.
 */

/** Cyrillic and Greek letters that look like Latin ones (lowercase; the text is lowercased first). */
const HOMOGLYPHS: Record<string, string> = {
  // Cyrillic
  а: 'a',
  в: 'b',
  е: 'e',
  ё: 'e',
  з: '3',
  и: 'u',
  і: 'i',
  ї: 'i',
  ј: 'j',
  к: 'k',
  м: 'm',
  н: 'h',
  о: 'o',
  п: 'n',
  р: 'p',
  с: 'c',
  т: 't',
  у: 'y',
  х: 'x',
  ѕ: 's',
  ԁ: 'd',
  ɡ: 'g',
  ԛ: 'q',
  ԝ: 'w',
  һ: 'h',
  // Greek
  α: 'a',
  β: 'b',
  ε: 'e',
  η: 'n',
  ι: 'i',
  κ: 'k',
  μ: 'u',
  ν: 'v',
  ο: 'o',
  ρ: 'p',
  τ: 't',
  υ: 'u',
  χ: 'x',
  ϲ: 'c',
  // Armenian
  ս: 'u',
  օ: 'o',
  ո: 'n',
  հ: 'h',
  ց: 'g',
  // Latin lookalikes that NFKC keeps apart
  ı: 'i',
  ł: 'l',
  ø: 'o',
  đ: 'd',
  ß: 'ss',
  æ: 'ae',
  œ: 'oe',
};

/** Leetspeak: symbols and digits standing for letters. "1" may be an i or an l: both are tried. */
const LEET: Record<string, string> = {
  '4': 'a',
  '@': 'a',
  '3': 'e',
  '0': 'o',
  '5': 's',
  $: 's',
  '7': 't',
  '8': 'b',
  '9': 'g',
  '!': 'i',
  '|': 'l',
};

const COMBINING_MARKS = /\p{M}+/gu;
const LETTER = /\p{L}/u;
/** What separates the letters of a disguised word, or words: anything but letters and leet symbols. */
const NON_WORD = /[^\p{L}0-9@$!|]+/u;

/** Lowercase, compatibility forms folded (full-width, ligatures, circled), lookalikes mapped, accents removed. */
export function foldText(text: string): string {
  const folded = text.normalize('NFKC').toLowerCase();
  let mapped = '';
  for (const char of folded) mapped += HOMOGLYPHS[char] ?? char;
  return mapped.normalize('NFD').replace(COMBINING_MARKS, '').normalize('NFC');
}

function deLeet(token: string, one: 'i' | 'l'): string {
  let out = '';
  for (const char of token) out += char === '1' ? one : (LEET[char] ?? char);
  return out;
}

/** "fuuuuck" -> "fuck": every run of one letter becomes a single letter. */
export function collapseRuns(word: string): string {
  return word.replace(/(.)\1+/gu, '$1');
}

/** True when a word has a letter stretched over three or more repeats, or doubled. */
export function hasRuns(word: string): boolean {
  return /(.)\1/u.test(word);
}

/**
 * Joins runs of one-letter tokens ("f u c k", "f.u.c.k") into one token, keeping the
 * others as they are. A run only counts from three letters, so "a b" stays two tokens.
 */
function joinSpelledOut(tokens: readonly string[]): string[] {
  const out: string[] = [];
  let run: string[] = [];
  const flush = () => {
    if (run.length >= 3) out.push(run.join(''));
    else out.push(...run);
    run = [];
  };
  for (const token of tokens) {
    if ([...token].length === 1) run.push(token);
    else {
      flush();
      out.push(token);
    }
  }
  flush();
  return out;
}

const lettersOnly = (token: string): string => token.replace(/[^\p{L}]/gu, '');

/** A chunk read as leetspeak; trailing "!" or "|" are punctuation, and digits alone stay numbers. */
function leetChunk(chunk: string, one: 'i' | 'l'): string {
  const trimmed = chunk.replace(/[!|]+$/u, '');
  if (!LETTER.test(trimmed) && [...trimmed].length !== 1) return trimmed;
  return deLeet(trimmed, one);
}

/**
 * The candidate readings of a text, each a sequence of normalised tokens. Texts are split
 * two ways: at every separator (so "f.u.c.k" becomes spelled-out letters, joined back),
 * and at whitespace only (so "fu.ck" is one word); each split is read plainly and as
 * leetspeak, with "1" as i and as l. "I scored 455" is not a word: digits alone stay numbers.
 */
export function candidateTokenSequences(text: string): string[][] {
  const folded = foldText(text);
  const splits = [
    folded.split(NON_WORD).filter((chunk) => chunk.length > 0),
    folded.split(/\s+/u).filter((chunk) => chunk.length > 0),
  ];
  const readings: string[][] = [];
  for (const chunks of splits) {
    readings.push(joinSpelledOut(chunks.map(lettersOnly).filter((token) => token.length > 0)));
    for (const one of ['i', 'l'] as const) {
      const tokens = chunks
        .map((chunk) => lettersOnly(leetChunk(chunk, one)))
        .filter((token) => token.length > 0);
      readings.push(joinSpelledOut(tokens));
    }
  }
  const seen = new Set<string>();
  return readings.filter((tokens) => {
    const key = tokens.join(' ');
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
