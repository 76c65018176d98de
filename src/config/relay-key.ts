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
  const key = decodeKeyText(text.trim());
  if (key === undefined) throw new KeyError('TCPSPLIT_KEY is neither hex nor base64');
  return { key: checkLength(key, 'TCPSPLIT_KEY'), source: 'TCPSPLIT_KEY', warnings: [] };
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
  const warnings: string[] = [];
  if ((mode & 0o077) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(4, '0');
    warnings.push(`key file ${file} is accessible by group or others (mode ${octal}); run: chmod 600 ${file}`);
  }
  return { key: checkLength(decodeKeyFile(bytes, file), file), source: file, warnings };
}

function decodeKeyFile(bytes: Buffer, file: string): Buffer {
  if (!isText(bytes)) return bytes;
  const decoded = decodeKeyText(bytes.toString('ascii').replace(/\s+/g, ''));
  if (decoded === undefined) throw new KeyError(`key file ${file} holds text that is neither hex nor base64`);
  return decoded;
}

/** Hex first: every hex string is also valid base64, and hex is what people mean. */
export function decodeKeyText(text: string): Buffer | undefined {
  if (/^(?:[0-9a-fA-F]{2})+$/.test(text)) return Buffer.from(text, 'hex');
  if (/^[A-Za-z0-9+/]+={0,2}$/.test(text) && text.length % 4 === 0) return Buffer.from(text, 'base64');
  if (/^[A-Za-z0-9_-]+$/.test(text) && text.length % 4 !== 1) return Buffer.from(text, 'base64url');
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

function checkLength(key: Buffer, source: string): Buffer {
  if (key.length < MIN_KEY_BYTES) {
    throw new KeyError(`key from ${source} is ${key.length} bytes; at least ${MIN_KEY_BYTES} are needed (head -c 32 /dev/urandom > relay.key)`);
  }
  return key;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
