import { describe, expect, it } from 'vitest';
import { LocalScorer, REASON_FLOOD, REASON_LANGUAGE, REASON_LINKS, REASON_REPEAT } from './local-scorer.js';
import { candidateTokenSequences, foldText } from './normalize.js';
import { MODERATION_THRESHOLD } from './scorer.js';

const scorer = new LocalScorer();
const blocked = (text: string, recent?: string[]) =>
  scorer.scoreNow(text, { recent }).score >= MODERATION_THRESHOLD;

describe('LocalScorer word lists', () => {
  it.each([
    ['plain English', 'fuck you'],
    ['inflected', 'this is fucking bad'],
    ['compound', 'motherfucker'],
    ['dots between letters', 'f.u.c.k you'],
    ['spaces between letters', 'f u c k you'],
    ['dashes and underscores', 's-h-i-t and c_u_n_t'],
    ['separators inside a word', 'fu.ck off'],
    ['repeated letters', 'fuuuuuuck'],
    ['repeated letters, short word', 'you asss'],
    ['leet digits', 'sh1t'],
    ['leet 1 as l', 'wanker and a$$ho1e'],
    ['leet symbols', '@$$hole'],
    ['leet with trailing punctuation', '$hit!'],
    ['leet 3 and 0', 'b1tch m0th3rfuck3r'],
    ['full-width', 'ｆｕｃｋ'],
    ['Cyrillic lookalikes', 'сunt'],
    ['Cyrillic mixed', 'ѕhіt'],
    ['Greek lookalikes', 'fυck'],
    ['diacritics', 'bítch'],
    ['uppercase', 'FUCK'],
    ['French insult', 'espèce de connard'],
    ['French with accents', 'enculé'],
    ['French phrase', 'ferme ta gueule'],
    ['French leet', 'c0nn4rd'],
    ['French separated', 'p.u.t.a.i.n'],
    ['French stretched', 'saloooope'],
    ['mild words adding up', 'stupid idiot moron'],
  ])('blocks %s: %s', (_name, text) => {
    const result = scorer.scoreNow(text);
    expect(result.score).toBeGreaterThanOrEqual(MODERATION_THRESHOLD);
    expect(result.reasons).toContain(REASON_LANGUAGE);
  });

  it.each([
    'Greetings from Scunthorpe',
    'This class has a great assistant',
    'pass the glass, the bass is loud',
    'I scored 455 points at 5 pm',
    'as it is, as we say',
    'Mississippi shiitake cocktail therapist',
    'La technique est bonne, merci beaucoup',
    'Le concert commence à 20h',
    'a b c d e',
    'hahaha that was great',
    'Check out https://example.com for the schedule',
    'stupid song, love it',
  ])('lets clean text pass: %s', (text) => {
    expect(blocked(text)).toBe(false);
  });

  it('names what matched for the moderators', () => {
    const result = scorer.scoreNow('f.u.c.k and connard');
    expect(result.matches).toEqual(expect.arrayContaining(['en:fuck', 'fr:connard']));
  });
});

describe('LocalScorer heuristics', () => {
  it('flags link spam: shorteners and many links', () => {
    expect(scorer.scoreNow('win at bit.ly/abc').reasons).toEqual([REASON_LINKS]);
    expect(blocked('see a.com b.com c.com')).toBe(true);
    expect(blocked('one link https://example.com/page')).toBe(false);
  });

  it('flags floods: long runs, repeated patterns, repeated words', () => {
    for (const text of ['aaaaaaaaaaaaaaaaaaaaaaaaa', 'lo'.repeat(20), 'spam '.repeat(12), 'x'.repeat(120)]) {
      const result = scorer.scoreNow(text);
      expect(result.score, text).toBeGreaterThanOrEqual(MODERATION_THRESHOLD);
      expect(result.reasons).toContain(REASON_FLOOD);
    }
    expect(blocked('soooo good')).toBe(false);
  });

  it('flags the third identical message from a sender', () => {
    expect(blocked('follow me', ['follow me'])).toBe(false);
    const result = scorer.scoreNow('Follow  me', { recent: ['follow me', 'other', 'FOLLOW ME'] });
    expect(result.reasons).toEqual([REASON_REPEAT]);
  });
});

describe('normalisation', () => {
  it('folds width, case, lookalikes and accents', () => {
    expect(foldText('ＨéllО Ωorld')).toBe('hello ωorld');
  });

  it('reads spelled-out words and leetspeak as candidate tokens', () => {
    const readings = candidateTokenSequences('h.e.l.l.o w0rld');
    expect(readings).toContainEqual(['hello', 'world']);
  });
});
