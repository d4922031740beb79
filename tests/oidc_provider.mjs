// A real OpenID Connect provider for tests/test_oidc.py: panva's oidc-provider
// (OpenID-certified), on 127.0.0.1, with one confidential client and its development
// login form (any login name works; the password is not checked) and consent screen.
//
//   node tests/oidc_provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI
//
// Prints "ready ISSUER" on stdout once it listens. The login name is the account's `sub`;
// its claims are `email` = the login name, `email_verified` true, unless a test set them
// with PUT /test/accounts/{sub} (a JSON object of claims). POST /test/tamper with
// {"mode": "payload" | "signature"} makes the next token response carry an ID token whose
// payload was changed after signing, or whose signature was; these /test/ routes are the
// test's remote control, not part of OpenID Connect.

import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const [port, clientId, clientSecret, redirectUri] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const accounts = new Map();
let tamper = null;

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-key', use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: ['tests-only-cookie-key'] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(_ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return { email: sub, email_verified: true, ...accounts.get(sub), sub };
      },
    };
  },
});

function b64(buffer) {
  return Buffer.from(buffer).toString('base64url');
}

function tampered(idToken, mode) {
  const [header, payload, signature] = idToken.split('.');
  if (mode === 'signature') {
    const bytes = Buffer.from(signature, 'base64url');
    bytes[0] ^= 1;
    return `${header}.${payload}.${b64(bytes)}`;
  }
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
  claims.email = 'mallory@example.com';
  return `${header}.${b64(JSON.stringify(claims))}.${signature}`;
}

async function readJson(ctx) {
  const chunks = [];
  for await (const chunk of ctx.req) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString() || '{}');
}

provider.use(async (ctx, next) => {
  const account = ctx.path.match(/^\/test\/accounts\/(.+)$/);
  if (account && ctx.method === 'PUT') {
    accounts.set(decodeURIComponent(account[1]), await readJson(ctx));
    ctx.status = 204;
    return;
  }
  if (ctx.path === '/test/tamper' && ctx.method === 'POST') {
    tamper = (await readJson(ctx)).mode;
    ctx.status = 204;
    return;
  }
  await next();
  if (ctx.path === '/token' && tamper && ctx.body && ctx.body.id_token) {
    ctx.body = { ...ctx.body, id_token: tampered(ctx.body.id_token, tamper) };
    tamper = null;
  }
});

provider.listen(Number(port), '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});
