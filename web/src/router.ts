import { useEffect, useState } from 'preact/hooks';

const read = () => location.hash.replace(/^#/, '') || '/';

/**
 * Hash routes (#/alerts?type=CERT_EXPIRING, #/fleet?id_prefix=dev-1&device=dev-17&cursor=dev-1a): the
 * server serves one page, and a reload or a shared link opens the same view with the same
 * filters, the same page of each list and the same device.
 */
export function useRoute(): { path: string; query: URLSearchParams } {
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const on = () => setRoute(read());
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  const [path, search = ''] = route.split('?');
  return { path: path || '/', query: new URLSearchParams(search) };
}

/** Query values: empty ones are left out; a list is the key repeated (the cursors of a list's pages). */
export type QueryValues = Record<string, string | readonly string[] | number | undefined | null>;

const apply = (query: URLSearchParams, values: QueryValues) => {
  for (const [k, v] of Object.entries(values)) {
    if (Array.isArray(v)) {
      query.delete(k);
      for (const item of v as readonly string[]) query.append(k, item);
    } else if (v === undefined || v === null || v === '') query.delete(k);
    else query.set(k, String(v));
  }
  return query;
};

/** The URL of `path` with these query values. */
export function routeHref(path: string, values: QueryValues | URLSearchParams): string {
  const query = values instanceof URLSearchParams ? values : apply(new URLSearchParams(), values);
  const text = query.toString();
  return `#${path}${text ? `?${text}` : ''}`;
}

/** The current query with these changes (an empty value removes its key; other keys keep their place). */
export function changedQuery(query: URLSearchParams, changes: QueryValues): URLSearchParams {
  return apply(new URLSearchParams(query), changes);
}

/** Moves to that URL (a history entry, so Back returns to the previous filters, page or device). */
export function navigate(path: string, values: QueryValues | URLSearchParams): void {
  const href = routeHref(path, values);
  if (location.hash !== href) location.hash = href;
}

/**
 * Keyset pages kept in the URL: `key` repeated holds the cursors that led to the current page
 * (`cursor=a&cursor=b` is page 3), so a reload or a link shows the same page, and Previous works
 * after a reload too. `go` moves to the URL with those cursors.
 */
export function urlPager(query: URLSearchParams, key: string, go: (changes: QueryValues) => void) {
  const stack = query.getAll(key).filter(Boolean);
  return {
    cursor: stack[stack.length - 1],
    page: stack.length + 1,
    next: (cursor: string) => go({ [key]: [...stack, cursor] }),
    previous: () => go({ [key]: stack.slice(0, -1) }),
    first: () => go({ [key]: [] }),
  };
}
export type UrlPager = ReturnType<typeof urlPager>;
