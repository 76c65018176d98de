/**
 * Every failure tcpsplit reports has a class here with a stable code.
 * docs/errors.md lists every code; test/errors.test.ts keeps the two in sync.
 * A retired code is never reused.
 */

export class TcpsplitError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

function define(code: string) {
  return class extends TcpsplitError {
    static readonly code = code;
    constructor(message: string, options?: ErrorOptions) {
      super(code, message, options);
    }
  };
}

// ---- configuration -------------------------------------------------------
export const ConfigError = define('TCPSPLIT_ERR_CONFIG');
export const KeyError = define('TCPSPLIT_ERR_KEY');
export const InsecureAcceptError = define('TCPSPLIT_ERR_NO_KEY');

// ---- relay protocol header (docs/protocol.md) ----------------------------
export const BadMagicError = define('TCPSPLIT_ERR_BAD_MAGIC');
export const BadVersionError = define('TCPSPLIT_ERR_BAD_VERSION');
export const BadFlagsError = define('TCPSPLIT_ERR_BAD_FLAGS');
export const BadAddressTypeError = define('TCPSPLIT_ERR_BAD_ADDR_TYPE');
export const BadAddressError = define('TCPSPLIT_ERR_BAD_ADDR');
export const BadPortError = define('TCPSPLIT_ERR_BAD_PORT');
export const HeaderAuthError = define('TCPSPLIT_ERR_AUTH');
export const HeaderStaleError = define('TCPSPLIT_ERR_STALE');
export const HeaderReplayError = define('TCPSPLIT_ERR_REPLAY');
export const ReplayCacheFullError = define('TCPSPLIT_ERR_REPLAY_CACHE_FULL');
export const HeaderTimeoutError = define('TCPSPLIT_ERR_HEADER_TIMEOUT');
export const HeaderTruncatedError = define('TCPSPLIT_ERR_HEADER_TRUNCATED');

// ---- forwarding ------------------------------------------------------------
export const PolicyDeniedError = define('TCPSPLIT_ERR_POLICY_DENIED');
export const ResolveError = define('TCPSPLIT_ERR_RESOLVE');
export const ConnectTimeoutError = define('TCPSPLIT_ERR_CONNECT_TIMEOUT');
export const ConnectError = define('TCPSPLIT_ERR_CONNECT');
export const PeerResetError = define('TCPSPLIT_ERR_RESET');
export const LegError = define('TCPSPLIT_ERR_LEG');
export const IdleTimeoutError = define('TCPSPLIT_ERR_IDLE_TIMEOUT');
export const DrainTimeoutError = define('TCPSPLIT_ERR_DRAIN_TIMEOUT');
export const ListenError = define('TCPSPLIT_ERR_LISTEN');
export const OverloadError = define('TCPSPLIT_ERR_OVERLOAD');

// ---- kernel calls (src/sys) -----------------------------------------------
export interface SysCallErrorOptions extends ErrorOptions {
  /** The failed call as the message names it, e.g. 'ioctl(TUNSETIFF)'. */
  readonly syscall?: string;
  readonly errno?: number;
}
export class SysCallError extends TcpsplitError {
  static readonly code = 'TCPSPLIT_ERR_SYSCALL';
  readonly syscall: string | undefined;
  readonly errno: number | undefined;
  constructor(message: string, options?: SysCallErrorOptions) {
    super(SysCallError.code, message, options);
    this.syscall = options?.syscall;
    this.errno = options?.errno;
  }
}
export const FfiUnavailableError = define('TCPSPLIT_ERR_FFI_UNAVAILABLE');
export const SocketOptionsError = define('TCPSPLIT_ERR_SOCKET_OPTIONS');
export const BpfLoadError = define('TCPSPLIT_ERR_BPF_LOAD');

// ---- lab -------------------------------------------------------------------
export const LabError = define('TCPSPLIT_ERR_LAB');
export const LabConfigError = define('TCPSPLIT_ERR_LAB_CONFIG');
export const LabToolMissingError = define('TCPSPLIT_ERR_LAB_TOOL_MISSING');
export const LabNotRootError = define('TCPSPLIT_ERR_LAB_NOT_ROOT');
export const LabBusyError = define('TCPSPLIT_ERR_LAB_BUSY');
export const LabNotUpError = define('TCPSPLIT_ERR_LAB_NOT_UP');

/** Every error class, for docs and tests. */
export const ALL_ERRORS = [
  ConfigError, KeyError, InsecureAcceptError,
  BadMagicError, BadVersionError, BadFlagsError, BadAddressTypeError, BadAddressError, BadPortError,
  HeaderAuthError, HeaderStaleError, HeaderReplayError, ReplayCacheFullError, HeaderTimeoutError,
  HeaderTruncatedError,
  PolicyDeniedError, ResolveError, ConnectTimeoutError, ConnectError, PeerResetError, LegError, IdleTimeoutError,
  DrainTimeoutError, ListenError, OverloadError,
  SysCallError, FfiUnavailableError, SocketOptionsError, BpfLoadError,
  LabError, LabConfigError, LabToolMissingError, LabNotRootError, LabBusyError, LabNotUpError,
] as const;

/** The code of an error that is not a TcpsplitError and has no code of its own: a bug. */
export const INTERNAL_ERROR_CODE = 'TCPSPLIT_ERR_INTERNAL';

export function errorCode(err: unknown): string {
  if (err instanceof TcpsplitError) return err.code;
  if (err instanceof Error && 'code' in err && typeof err.code === 'string') return err.code;
  return INTERNAL_ERROR_CODE;
}
