/**
 * The built-in word lists: a small seed of common English and French insults and profanity,
 * written without accents (the text is folded the same way before matching).
 *
 * An entry is matched against whole tokens: "word" exactly, "word*" as a prefix ("fucking"),
 * "*word*" anywhere inside a token ("motherfucker"). Prefix and infix forms are only for
 * stems that no innocent word starts with or contains. A phrase ("ta gueule") matches
 * consecutive tokens. The weight is the score one occurrence gives; below the threshold
 * (0.7) a word alone does not block a message, a few of them together do.
 */

export interface WordEntry {
  pattern: string;
  weight: number;
}

export interface WordList {
  language: string;
  entries: readonly WordEntry[];
}

const SEVERE = 0.95;
const STRONG = 0.8;
const MILD = 0.4;

const entries = (weight: number, patterns: readonly string[]): WordEntry[] =>
  patterns.map((pattern) => ({ pattern, weight }));

export const ENGLISH: WordList = {
  language: 'en',
  entries: [
    ...entries(SEVERE, [
      '*fuck*',
      '*fvck*',
      'fck',
      'fuk',
      'fuq',
      'fucc',
      'cunt',
      'cunts',
      'motherfucker*',
      'faggot*',
      'retard',
      'retards',
      'kys',
    ]),
    ...entries(STRONG, [
      'shit',
      'shits',
      'shitty',
      'bullshit',
      'bitch*',
      'asshole*',
      'ass',
      'bastard',
      'bastards',
      'dickhead*',
      'whore*',
      'slut',
      'sluts',
      'wanker*',
      'twat',
      'piss off',
      'kill yourself',
    ]),
    ...entries(MILD, ['damn', 'crap', 'idiot', 'stupid', 'moron', 'loser', 'sucks', 'jerk', 'dick']),
  ],
};

export const FRENCH: WordList = {
  language: 'fr',
  entries: [
    ...entries(SEVERE, ['encule*', 'nique ta mere', 'fils de pute', 'pede', 'pedes']),
    ...entries(STRONG, [
      'connard*',
      'connasse*',
      'salope*',
      'salaud*',
      'pute',
      'putes',
      'putain',
      'ptn',
      'merde*',
      'batard*',
      'enfoire*',
      'ta gueule',
      'ferme ta gueule',
      'nique',
      'niquer',
      'bouffon',
      'trou du cul',
    ]),
    ...entries(MILD, ['con', 'conne', 'cons', 'debile', 'abruti*', 'cretin*', 'imbecile*', 'naze', 'nul']),
  ],
};

export const BUILT_IN_LISTS: readonly WordList[] = [ENGLISH, FRENCH];
