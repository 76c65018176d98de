/**
 * The pre-shared key: from a key file, else TCPSPLIT_KEY_FILE, else TCPSPLIT_KEY (hex
 * or base64). A key file holds raw bytes (`head -c 32 /dev/urandom`) or hex or base64
 * text (`openssl rand -hex 32`); surrounding whitespace in text is ignored.
 *
 * Text that is neither hex nor base64 (a passphrase) is refused rather than used raw:
 * whether an editor added a final newline would silently decide whether two relays share
 * a key.
 */
import { open } from 'node:fs/promises';
import { KeyError } from '../errors.js';

import { MIN_KEY_BYTES } from '../protocol/header-auth.js';

export { MIN_KEY_BYTES };
/** A key is tens of bytes; a bigger "key file" is a wrong path. */
const MAX_KEY_FILE_BYTES = 4096;

export interface LoadedKey {
  readonly key: Buffer;
  /** Where it came from, for logs: a path or an environment variable's name. */
  readonly source: string;
  readonly warnings: readonly string[];
}

export async function loadRelayKey(keyFile: string | undefined, env: NodeJS.ProcessEnv): Promise<LoadedKey | undefined> {
  const file = keyFile ?? nonEmpty(env['TCPSPLIT_KEY_FILE']);
  if (file !== undefined) return readKeyFile(file);
  const text = nonEmpty(env['TCPSPLIT_KEY']);
  if (text === undefined) return undefined;
  const decoded = decodeKeyText(text.trim());
  if (decoded === undefined) throw new KeyError('TCPSPLIT_KEY is neither hex nor base64');
  checkLength(decoded, `TCPSPLIT_KEY (${text.trim().length} characters of ${decoded.encoding} text)`);
  return { key: decoded.key, source: 'TCPSPLIT_KEY', warnings: [] };
}

async function readKeyFile(file: string): Promise<LoadedKey> {
  let bytes: Buffer;
  let mode: number;
  try {
    const handle = await open(file, 'r');
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) throw new KeyError(`key file ${file} is not a regular file`);
      if (stat.size > MAX_KEY_FILE_BYTES) throw new KeyError(`key file ${file} is larger than ${MAX_KEY_FILE_BYTES} bytes`);
      mode = stat.mode;
      bytes = await handle.readFile();
    } finally {
      await handle.close();
    }
  } catch (err) {
    if (err instanceof KeyError) throw err;
    throw new KeyError(`cannot read key file ${file}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const octal = (mode & 0o777).toString(8).padStart(4, '0');
  // Like ssh with a private key: a key every local user can read authenticates nobody.
  if ((mode & 0o004) !== 0) {
    throw new KeyError(`key file ${file} is readable by every user on this host (mode ${octal}); run: chmod 600 ${file}`);
  }
  const warnings: string[] = [];
  if ((mode & 0o077) !== 0) {
    warnings.push(`key file ${file} is accessible by group or others (mode ${octal}); unless a group is meant to read it, run: chmod 600 ${file}`);
  }
  const decoded = decodeKeyFile(bytes, file);
  checkLength(decoded, `key file ${file} (${bytes.length} bytes${decoded.encoding === 'raw' ? '' : ` of ${decoded.encoding} text`})`);
  return { key: decoded.key, source: file, warnings };
}

interface DecodedKey {
  readonly key: Buffer;
  readonly encoding: 'raw' | 'hex' | 'base64' | 'base64url';
}

function decodeKeyFile(bytes: Buffer, file: string): DecodedKey {
  if (!isText(bytes)) return { key: bytes, encoding: 'raw' };
  // Line breaks go (base64 is often wrapped); a space inside a line is a passphrase's.
  const decoded = decodeKeyText(bytes.toString('ascii').trim().replace(/[ \t]*\r?\n[ \t]*/g, ''));
  if (decoded === undefined) {
    throw new KeyError(`key file ${file} holds text that is neither hex nor base64 (a passphrase is refused: use head -c 32 /dev/urandom or openssl rand -hex 32)`);
  }
  return decoded;
}

/** Hex first: every hex string is also valid base64, and hex is what people mean. */
export function decodeKeyText(text: string): DecodedKey | undefined {
  if (/^(?:[0-9a-fA-F]{2})+$/.test(text)) return { key: Buffer.from(text, 'hex'), encoding: 'hex' };
  if (/^[A-Za-z0-9+/]+={0,2}$/.test(text) && text.length % 4 === 0) return { key: Buffer.from(text, 'base64'), encoding: 'base64' };
  if (/^[A-Za-z0-9_-]+$/.test(text) && text.length % 4 !== 1) return { key: Buffer.from(text, 'base64url'), encoding: 'base64url' };
  return undefined;
}

/** Printable ASCII and whitespace only; 32 random bytes are that with probability ~1e-14. */
function isText(bytes: Buffer): boolean {
  if (bytes.length === 0) return false;
  for (const b of bytes) {
    if ((b < 0x20 || b > 0x7e) && b !== 0x09 && b !== 0x0a && b !== 0x0d) return false;
  }
  return true;
}

/** `source` says where the key came from and how it was read, so a short key's size makes sense. */
function checkLength({ key, encoding }: DecodedKey, source: string): void {
  if (key.length < MIN_KEY_BYTES) {
    const what = encoding === 'raw' ? `${key.length} bytes` : `${key.length} bytes once decoded as ${encoding}`;
    throw new KeyError(`key from ${source} is ${what}; at least ${MIN_KEY_BYTES} are needed (head -c 32 /dev/urandom > relay.key)`);
  }
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
