import { InvalidArgumentError } from '../../common/contracts/index.js';
/**
 * A small method + path router. Patterns are slash-separated segments: literals,
 * `:name` (one non-empty segment) and a final `*` (the rest of the path, possibly
 * empty). When several patterns match, the most specific wins, segment by segment:
 * literal over `:param` over `*`, so `/stream/live` beats `/stream/:id`.
 */

export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];

type Segment = { kind: 'literal'; value: string } | { kind: 'param'; name: string } | { kind: 'rest' };

interface CompiledRoute<T> {
  method: HttpMethod;
  pattern: string;
  segments: Segment[];
  value: T;
}

export type RouteMatch<T> =
  | { kind: 'found'; pattern: string; params: Record<string, string>; value: T }
  | { kind: 'method_not_allowed'; pattern: string; allowed: HttpMethod[] }
  | { kind: 'not_found' };

const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function compile(pattern: string): Segment[] {
  if (!pattern.startsWith('/')) throw new Error(`route pattern "${pattern}" must start with /`);
  const parts = pattern.split('/').slice(1);
  const names = new Set<string>();
  return parts.map((part, index) => {
    if (part === '*') {
      if (index !== parts.length - 1)
        throw new Error(`route pattern "${pattern}": * must be the last segment`);
      return { kind: 'rest' };
    }
    if (part.startsWith(':')) {
      const name = part.slice(1);
      if (!PARAM_NAME.test(name)) throw new Error(`route pattern "${pattern}": bad parameter name "${name}"`);
      if (names.has(name)) throw new Error(`route pattern "${pattern}": parameter "${name}" repeated`);
      names.add(name);
      return { kind: 'param', name };
    }
    if (part.includes('*') || part.includes(':')) {
      throw new Error(`route pattern "${pattern}": "${part}" mixes a literal with * or :`);
    }
    return { kind: 'literal', value: part };
  });
}

function decodeSegment(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new InvalidArgumentError(`malformed percent-encoding in path segment "${raw}"`);
  }
}

/** Per-segment ranks (2 literal, 1 param, 0 rest) when `segments` matches `parts`, else null. */
function rank(segments: Segment[], parts: string[]): number[] | null {
  const ranks: number[] = [];
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    if (segment.kind === 'rest') {
      ranks.push(0);
      return ranks;
    }
    const part = parts[i];
    if (part === undefined) return null;
    if (segment.kind === 'literal') {
      if (segment.value !== part) return null;
      ranks.push(2);
    } else {
      if (part === '') return null;
      ranks.push(1);
    }
  }
  return segments.length === parts.length ? ranks : null;
}

function moreSpecific(a: number[], b: number[]): boolean {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i] ?? -1;
    const y = b[i] ?? -1;
    if (x !== y) return x > y;
  }
  return false;
}

export class Router<T> {
  private readonly routes: CompiledRoute<T>[] = [];

  add(method: HttpMethod, pattern: string, value: T): void {
    const segments = compile(pattern);
    const shape = (s: Segment[]) => s.map((x) => (x.kind === 'literal' ? x.value : `<${x.kind}>`)).join('/');
    const clash = this.routes.find((r) => r.method === method && shape(r.segments) === shape(segments));
    if (clash) throw new Error(`route ${method} ${pattern} clashes with ${clash.method} ${clash.pattern}`);
    this.routes.push({ method, pattern, segments, value });
  }

  /** `path` is the raw URL path (no query); parameters come back percent-decoded. */
  match(method: HttpMethod, path: string): RouteMatch<T> {
    const parts = path.split('/').slice(1);
    let best: { route: CompiledRoute<T>; ranks: number[] } | null = null;
    let closest: { route: CompiledRoute<T>; ranks: number[] } | null = null;
    const allowed = new Set<HttpMethod>();
    for (const route of this.routes) {
      const ranks = rank(route.segments, parts);
      if (!ranks) continue;
      allowed.add(route.method);
      if (route.method === 'GET') allowed.add('HEAD');
      if (!closest || moreSpecific(ranks, closest.ranks)) closest = { route, ranks };
      // HEAD is served by the GET route unless a HEAD route of its own exists.
      const serves = route.method === method || (method === 'HEAD' && route.method === 'GET');
      if (!serves) continue;
      const better =
        !best ||
        moreSpecific(ranks, best.ranks) ||
        (!moreSpecific(best.ranks, ranks) && route.method === method && best.route.method !== method);
      if (better) best = { route, ranks };
    }
    if (best) {
      return {
        kind: 'found',
        pattern: best.route.pattern,
        params: paramsOf(best.route, parts),
        value: best.route.value,
      };
    }
    if (!closest) return { kind: 'not_found' };
    return { kind: 'method_not_allowed', pattern: closest.route.pattern, allowed: [...allowed].sort() };
  }

  list(): Array<{ method: HttpMethod; pattern: string }> {
    return this.routes.map(({ method, pattern }) => ({ method, pattern }));
  }
}

function paramsOf<T>(route: CompiledRoute<T>, parts: string[]): Record<string, string> {
  const params: Record<string, string> = {};
  route.segments.forEach((segment, index) => {
    if (segment.kind === 'param') params[segment.name] = decodeSegment(parts[index]!);
    if (segment.kind === 'rest') params['*'] = parts.slice(index).map(decodeSegment).join('/');
  });
  return params;
}

export function isHttpMethod(value: string): value is HttpMethod {
  return (HTTP_METHODS as readonly string[]).includes(value);
}
