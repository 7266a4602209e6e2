/**
 * Media URLs carry the server's PUBLIC_URL, which can differ from the address this page was
 * loaded from (a proxy, or an ephemeral port). The page's CSP allows media only from 'self', and
 * the edge that served the page serves /media/ too, so those are fetched from this origin.
 */
export function sameOriginMedia(url: string): string {
  const parsed = new URL(url, location.href);
  return parsed.pathname.startsWith('/media/') ? `${parsed.pathname}${parsed.search}` : url;
}
