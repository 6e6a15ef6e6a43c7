import { useEffect, useState } from 'preact/hooks';

const read = () => location.hash.replace(/^#/, '') || '/';

/**
 * Hash routes (#/alerts, #/fleet?id_prefix=dev-1&device=dev-17): the server serves one page, and
 * a reload or a shared link opens the same view with the same filters and device.
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

/** The URL of `path` with these query values (empty ones left out). */
export function routeHref(path: string, values: Record<string, string | undefined | null>): string {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(values)) if (v) query.set(k, v);
  const text = query.toString();
  return `#${path}${text ? `?${text}` : ''}`;
}

/** Moves to that URL (a history entry, so Back returns to the previous filters or device). */
export function navigate(path: string, values: Record<string, string | undefined | null>): void {
  const href = routeHref(path, values);
  if (location.hash !== href) location.hash = href;
}
