/** Types for postgres-access.mjs (plain JS: it runs before npm dependencies exist). */
export function ensurePostgresCanReach(root: string, log: (line: string) => void): string[];
