import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * An `openssl ca` configuration in `dir` (index.txt and crlnumber there) for `-gencrl` with the
 * CRL extensions our CRLs carry: Authority Key Identifier (and CRL Number; no Issuing Distribution
 * Point: a complete CRL); nextUpdate 7 days. Returns the config path.
 */
export function writeOpensslCaConfig(dir: string, ca: { certPath: string; keyPath: string }): string {
  const path = join(dir, 'ca.cnf');
  writeFileSync(
    path,
    `[ ca ]
default_ca = CA_default
[ CA_default ]
dir = ${dir}
database = $dir/index.txt
crlnumber = $dir/crlnumber
certificate = ${ca.certPath}
private_key = ${ca.keyPath}
default_md = sha256
default_crl_days = 7
unique_subject = no
crl_extensions = crl_ext
[ crl_ext ]
authorityKeyIdentifier = keyid:always
`,
  );
  return path;
}

/** index.txt time: YYMMDDHHMMSSZ */
export const opensslIndexTime = (ms: number): string => new Date(ms).toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z';
