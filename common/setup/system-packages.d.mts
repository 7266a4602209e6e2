/** Types for system-packages.mjs (plain JS: it runs before npm dependencies exist). */
export function missingDebianPackages(names: string[]): string[] | null;
export function installHint(names: string[]): string;
export function ensureDebianPackages(
  names: string[],
  why: string,
  log: (line: string) => void,
  options?: { install?: boolean },
): void;
