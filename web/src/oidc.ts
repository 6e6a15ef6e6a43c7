/** OIDC authorization code flow with PKCE (RFC 7636, S256) for a public client; nothing secret is kept after the exchange. */
const PENDING = 'certfleet.oidc.pending';

export interface OidcSettings {
  issuer: string;
  client_id: string;
  scope: string;
}

interface Discovery {
  authorization_endpoint: string;
  token_endpoint: string;
}

const base64url = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const randomString = () => base64url(crypto.getRandomValues(new Uint8Array(32)));
const redirectUri = () => `${location.origin}/app/`;

async function discover(issuer: string): Promise<Discovery> {
  const res = await fetch(`${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`);
  if (!res.ok) throw new Error(`the identity provider's discovery document answered ${res.status}`);
  return (await res.json()) as Discovery;
}

export async function pkceChallenge(verifier: string): Promise<string> {
  return base64url(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier))));
}

/** Sends the browser to the provider's login page. */
export async function beginOidcSignIn(settings: OidcSettings): Promise<void> {
  const d = await discover(settings.issuer);
  const verifier = randomString();
  const state = randomString();
  // The verifier must survive the redirect; it is useless without the one-time code and is removed on return.
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state }));
  const url = new URL(d.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: settings.client_id,
    redirect_uri: redirectUri(),
    scope: settings.scope,
    state,
    nonce: randomString(),
    code_challenge: await pkceChallenge(verifier),
    code_challenge_method: 'S256',
  }).toString();
  location.assign(url.toString());
}

/** On return from the provider (?code&state): the access token, or null when this is no OIDC return. */
export async function completeOidcSignIn(settings: OidcSettings): Promise<string | null> {
  const params = new URLSearchParams(location.search);
  if (!params.has('code') && !params.has('error')) return null;
  const pending = sessionStorage.getItem(PENDING);
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, '', `${location.pathname}${location.hash}`);
  if (params.has('error')) throw new Error(`sign-in failed at the identity provider: ${params.get('error_description') ?? params.get('error')}`);
  const { verifier, state } = pending ? (JSON.parse(pending) as { verifier: string; state: string }) : { verifier: '', state: '' };
  if (!verifier || params.get('state') !== state) throw new Error('sign-in failed: the answer does not belong to this browser session (state mismatch); try again');
  const d = await discover(settings.issuer);
  const res = await fetch(d.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code: params.get('code') ?? '',
      redirect_uri: redirectUri(),
      client_id: settings.client_id,
      code_verifier: verifier,
    }),
  });
  const body = (await res.json().catch(() => ({}))) as { access_token?: string; error?: string; error_description?: string };
  if (!res.ok || !body.access_token) throw new Error(`sign-in failed: the token exchange answered ${res.status} ${body.error_description ?? body.error ?? ''}`.trim());
  return body.access_token;
}
