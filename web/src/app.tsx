import { useEffect, useRef, useState } from 'preact/hooks';
import { call, client } from './api/client';
import { beginOidcSignIn, completeOidcSignIn, type OidcSettings } from './oidc';
import { useRoute } from './router';
import { currentPrincipal, endSession, isCustomer, isOperator, startSession, type Principal } from './session';
import { messageOf, Outcome } from './ui';
import { AlertsView } from './views/alerts';
import { AuditView } from './views/audit';
import { CrlView } from './views/crl';
import { FleetView } from './views/fleet';
import { WebhooksView } from './views/webhooks';
import { OperatorView } from './views/operator';

type Boot = { state: 'loading' } | { state: 'signed-out'; oidc: OidcSettings | null; error?: string } | { state: 'signed-in'; principal: Principal };

export function App() {
  const [boot, setBoot] = useState<Boot>({ state: 'loading' });
  useEffect(() => {
    (async () => {
      const { oidc } = await call(client.GET('/auth/config'));
      try {
        const token = oidc ? await completeOidcSignIn(oidc) : null;
        const principal = token ? await startSession(token) : await currentPrincipal();
        setBoot(principal ? { state: 'signed-in', principal } : { state: 'signed-out', oidc });
      } catch (e) {
        setBoot({ state: 'signed-out', oidc, error: messageOf(e) });
      }
    })().catch((e: unknown) => setBoot({ state: 'signed-out', oidc: null, error: messageOf(e) }));
  }, []);

  if (boot.state === 'loading')
    return (
      <main class="container">
        <p aria-busy="true">Loading the console…</p>
      </main>
    );
  if (boot.state === 'signed-out') return <SignIn oidc={boot.oidc} initialError={boot.error} onSignedIn={(principal) => setBoot({ state: 'signed-in', principal })} />;
  return <Shell principal={boot.principal} onSignedOut={() => setBoot({ state: 'signed-out', oidc: null })} />;
}

function SignIn(props: { oidc: OidcSettings | null; initialError?: string; onSignedIn: (p: Principal) => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | null>(props.initialError ?? null);
  const [busy, setBusy] = useState(false);
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => heading.current?.focus(), []);
  const paste = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      props.onSignedIn(await startSession(token.trim()));
    } catch (err) {
      setError(messageOf(err));
    } finally {
      setBusy(false);
    }
  };
  const tokenForm = (
    <form onSubmit={paste}>
      <label>
        Access token
        <textarea name="token" rows={4} required value={token} onInput={(e) => setToken(e.currentTarget.value)} autocomplete="off" spellcheck={false} aria-describedby="token-help" />
        <small id="token-help">
          A development token: <code>npx certfleet token --tenant TENANT1</code> (add <code>--role operator</code> for the operator view).
        </small>
      </label>
      <button type="submit" aria-busy={busy} disabled={busy}>
        Sign in with the token
      </button>
    </form>
  );
  return (
    <main class="container narrow">
      <h1 ref={heading} tabIndex={-1}>
        certfleet console
      </h1>
      <p>Device certificates of your fleet: issue, rotate, revoke, alerts, CRL and audit.</p>
      <Outcome error={error} />
      {props.oidc ? (
        <>
          <button type="button" onClick={() => beginOidcSignIn(props.oidc!).catch((e: unknown) => setError(messageOf(e)))}>
            Sign in with {new URL(props.oidc.issuer).host}
          </button>
          <details>
            <summary>Sign in with a token instead</summary>
            {tokenForm}
          </details>
        </>
      ) : (
        tokenForm
      )}
    </main>
  );
}

const CUSTOMER_LINKS = [
  ['/fleet', 'Devices & certificates'],
  ['/alerts', 'Alerts'],
  ['/crl', 'CRL'],
  ['/webhooks', 'Webhooks'],
  ['/audit', 'Audit log'],
] as const;
const OPERATOR_LINKS = [
  ['/operator/overview', 'Fleet overview'],
  ['/operator/devices', 'All devices'],
  ['/operator/certificates', 'All certificates'],
  ['/operator/cas', 'Certificate authorities'],
  ['/operator/alerts', 'All alerts'],
  ['/operator/audit', 'All audit'],
] as const;

function Shell(props: { principal: Principal; onSignedOut: () => void }) {
  const p = props.principal;
  const customer = isCustomer(p);
  const operator = isOperator(p);
  const { path: route, query } = useRoute();
  const [error, setError] = useState<string | null>(null);
  const main = useRef<HTMLElement>(null);
  const fallback = customer ? '/fleet' : operator ? '/operator/overview' : '/none';
  const path = route === '/' ? fallback : route;
  useEffect(() => {
    if (route !== '/') main.current?.focus();
  }, [route]);
  const signOut = async () => {
    try {
      await endSession();
      location.hash = '';
      props.onSignedOut();
    } catch (e) {
      setError(messageOf(e));
    }
  };
  const links = [...(customer ? CUSTOMER_LINKS : []), ...(operator ? OPERATOR_LINKS : [])];
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => (e.preventDefault(), main.current?.focus())}>
        Skip to content
      </a>
      <header class="container">
        <nav aria-label="Main">
          <ul>
            <li>
              <strong>certfleet</strong>
            </li>
          </ul>
          <ul class="links">
            {links.map(([href, label]) => (
              <li key={href}>
                <a href={`#${href}`} aria-current={path === href || path.startsWith(`${href}/`) ? 'page' : undefined}>
                  {label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <p class="who">
          Signed in as <strong>{p.subject}</strong>
          {p.tenant_id ? <> · tenant <strong>{p.tenant_id}</strong></> : null} · {p.roles.join(', ') || 'no role'}{' '}
          <button type="button" class="secondary outline small" onClick={signOut}>
            Sign out
          </button>
        </p>
        <Outcome error={error} />
      </header>
      <main id="main" class="container" ref={main} tabIndex={-1}>
        <Route path={path} query={query} customer={customer} operator={operator} />
      </main>
    </>
  );
}

function Route({ path, query, customer, operator }: { path: string; query: URLSearchParams; customer: boolean; operator: boolean }) {
  if (path.startsWith('/operator')) {
    if (!operator) return <Denied what="The operator view needs the operator role." />;
    return <OperatorView tab={path.slice('/operator/'.length) || 'overview'} query={query} />;
  }
  if (!customer) return <Denied what="This view needs a tenant token with the customer or tenant-admin role." />;
  switch (path) {
    case '/fleet':
      return <FleetView query={query} />;
    case '/alerts':
      return <AlertsView scope="customer" query={query} />;
    case '/crl':
      return <CrlView scope="customer" />;
    case '/webhooks':
      return <WebhooksView />;
    case '/audit':
      return <AuditView scope="customer" query={query} />;
    default:
      return <Denied what={`There is no page at ${path}.`} />;
  }
}

function Denied({ what }: { what: string }) {
  return (
    <article>
      <h1>Not available</h1>
      <p role="alert">{what}</p>
    </article>
  );
}
