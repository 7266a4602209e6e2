import { describe, expect, it } from 'vitest';
import { Router } from './router.js';

function router() {
  const r = new Router<string>();
  r.add('GET', '/healthz', 'health');
  r.add('GET', '/stream/:id', 'stream-get');
  r.add('DELETE', '/stream/:id', 'stream-delete');
  r.add('POST', '/stream/start', 'stream-start');
  r.add('POST', '/admin/users/:id/roles', 'roles');
  r.add('GET', '/media/*', 'media');
  return r;
}

describe('Router', () => {
  it('matches literal paths', () => {
    expect(router().match('GET', '/healthz')).toMatchObject({ kind: 'found', value: 'health', params: {} });
  });

  it('extracts and percent-decodes parameters', () => {
    expect(router().match('GET', '/stream/a%20b')).toMatchObject({
      kind: 'found',
      pattern: '/stream/:id',
      params: { id: 'a b' },
    });
    expect(router().match('POST', '/admin/users/42/roles')).toMatchObject({
      params: { id: '42' },
      value: 'roles',
    });
  });

  it('prefers a literal segment over a parameter', () => {
    expect(router().match('POST', '/stream/start')).toMatchObject({ value: 'stream-start' });
    expect(router().match('GET', '/stream/start')).toMatchObject({
      value: 'stream-get',
      params: { id: 'start' },
    });
  });

  it('gives the rest of the path to *', () => {
    expect(router().match('GET', '/media/avatars/1/abc.png')).toMatchObject({
      value: 'media',
      params: { '*': 'avatars/1/abc.png' },
    });
    expect(router().match('GET', '/media/')).toMatchObject({ value: 'media', params: { '*': '' } });
  });

  it('does not match an empty parameter, extra segments or a trailing slash', () => {
    expect(router().match('GET', '/stream/')).toEqual({ kind: 'not_found' });
    expect(router().match('GET', '/stream/1/extra')).toEqual({ kind: 'not_found' });
    expect(router().match('GET', '/healthz/')).toEqual({ kind: 'not_found' });
    expect(router().match('GET', '/nope')).toEqual({ kind: 'not_found' });
  });

  it('reports the allowed methods when only the method is wrong', () => {
    expect(router().match('PUT', '/stream/7')).toEqual({
      kind: 'method_not_allowed',
      pattern: '/stream/:id',
      allowed: ['DELETE', 'GET', 'HEAD'],
    });
    expect(router().match('GET', '/admin/users/1/roles')).toMatchObject({
      kind: 'method_not_allowed',
      allowed: ['POST'],
    });
  });

  it('serves HEAD with the GET route unless a HEAD route exists', () => {
    const r = router();
    expect(r.match('HEAD', '/healthz')).toMatchObject({ kind: 'found', value: 'health' });
    r.add('HEAD', '/healthz', 'head');
    expect(r.match('HEAD', '/healthz')).toMatchObject({ kind: 'found', value: 'head' });
  });

  it('rejects malformed percent-encoding with a 400-class error', () => {
    expect(() => router().match('GET', '/stream/%E0%A4%A')).toThrow(/malformed percent-encoding/);
  });

  it('refuses clashing and malformed patterns', () => {
    const r = router();
    expect(() => r.add('GET', '/stream/:other', 'x')).toThrow(/clashes with GET \/stream\/:id/);
    expect(() => r.add('GET', 'no-slash', 'x')).toThrow(/must start with \//);
    expect(() => r.add('GET', '/a/*/b', 'x')).toThrow(/\* must be the last segment/);
    expect(() => r.add('GET', '/a/:x/:x', 'x')).toThrow(/repeated/);
    expect(() => r.add('GET', '/a/b:c', 'x')).toThrow(/mixes a literal/);
  });
});
