import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

/** @peculiar/x509, set up once with Node's WebCrypto (it needs reflect-metadata loaded first). */
export { x509 };
