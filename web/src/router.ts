import { useEffect, useState } from 'preact/hooks';

/** Hash routes (#/alerts, #/operator/audit): the server serves one page, and a reload keeps the view. */
export function useRoute(): string {
  const read = () => location.hash.replace(/^#/, '') || '/';
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const on = () => setRoute(read());
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return route;
}
