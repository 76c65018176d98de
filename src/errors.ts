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

/**
 * A class for one code. `name` is set explicitly: a class expression returned from a
 * function is anonymous, and `err.name` (what stack traces and pino's `err` print) would be ''.
 */
function define(name: string, code: string) {
  const ErrorClass = class extends TcpsplitError {
    static readonly code = code;
    constructor(message: string, options?: ErrorOptions) {
      super(code, message, options);
    }
  };
  Object.defineProperty(ErrorClass, 'name', { value: name });
  return ErrorClass;
}

// ---- configuration -------------------------------------------------------
export const ConfigError = define('ConfigError', 'TCPSPLIT_ERR_CONFIG');
export const KeyError = define('KeyError', 'TCPSPLIT_ERR_KEY');
export const InsecureAcceptError = define('InsecureAcceptError', 'TCPSPLIT_ERR_NO_KEY');
export const RestartRequiredError = define('RestartRequiredError', 'TCPSPLIT_ERR_RESTART_REQUIRED');

// ---- relay protocol header (docs/protocol.md) ----------------------------
export const BadMagicError = define('BadMagicError', 'TCPSPLIT_ERR_BAD_MAGIC');
export const BadVersionError = define('BadVersionError', 'TCPSPLIT_ERR_BAD_VERSION');
export const BadFlagsError = define('BadFlagsError', 'TCPSPLIT_ERR_BAD_FLAGS');
export const BadAddressTypeError = define('BadAddressTypeError', 'TCPSPLIT_ERR_BAD_ADDR_TYPE');
export const BadAddressError = define('BadAddressError', 'TCPSPLIT_ERR_BAD_ADDR');
export const BadPortError = define('BadPortError', 'TCPSPLIT_ERR_BAD_PORT');
export const HeaderAuthError = define('HeaderAuthError', 'TCPSPLIT_ERR_AUTH');
export const HeaderStaleError = define('HeaderStaleError', 'TCPSPLIT_ERR_STALE');
export const HeaderReplayError = define('HeaderReplayError', 'TCPSPLIT_ERR_REPLAY');
export const ReplayCacheFullError = define('ReplayCacheFullError', 'TCPSPLIT_ERR_REPLAY_CACHE_FULL');
export const HeaderTimeoutError = define('HeaderTimeoutError', 'TCPSPLIT_ERR_HEADER_TIMEOUT');
export const HeaderTruncatedError = define('HeaderTruncatedError', 'TCPSPLIT_ERR_HEADER_TRUNCATED');
export const BadFrameError = define('BadFrameError', 'TCPSPLIT_ERR_BAD_FRAME');
export const IdleLimitError = define('IdleLimitError', 'TCPSPLIT_ERR_IDLE_LIMIT');
export const IdleClosedError = define('IdleClosedError', 'TCPSPLIT_ERR_IDLE_CLOSED');

// ---- forwarding ------------------------------------------------------------
export const PolicyDeniedError = define('PolicyDeniedError', 'TCPSPLIT_ERR_POLICY_DENIED');
export const ResolveError = define('ResolveError', 'TCPSPLIT_ERR_RESOLVE');
export const ConnectTimeoutError = define('ConnectTimeoutError', 'TCPSPLIT_ERR_CONNECT_TIMEOUT');
export const ConnectError = define('ConnectError', 'TCPSPLIT_ERR_CONNECT');
export const PeerResetError = define('PeerResetError', 'TCPSPLIT_ERR_RESET');
export const LegError = define('LegError', 'TCPSPLIT_ERR_LEG');
export const IdleTimeoutError = define('IdleTimeoutError', 'TCPSPLIT_ERR_IDLE_TIMEOUT');
export const DrainTimeoutError = define('DrainTimeoutError', 'TCPSPLIT_ERR_DRAIN_TIMEOUT');
export const ListenError = define('ListenError', 'TCPSPLIT_ERR_LISTEN');
export const OverloadError = define('OverloadError', 'TCPSPLIT_ERR_OVERLOAD');
export const PendingEvictedError = define('PendingEvictedError', 'TCPSPLIT_ERR_PENDING_EVICTED');
export const FdLimitError = define('FdLimitError', 'TCPSPLIT_ERR_FD_LIMIT');
export const WorkerExitError = define('WorkerExitError', 'TCPSPLIT_ERR_WORKER_EXIT');
export const UnpairedError = define('UnpairedError', 'TCPSPLIT_ERR_UNPAIRED');

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
export const FfiUnavailableError = define('FfiUnavailableError', 'TCPSPLIT_ERR_FFI_UNAVAILABLE');
export const SocketOptionsError = define('SocketOptionsError', 'TCPSPLIT_ERR_SOCKET_OPTIONS');
export const BpfLoadError = define('BpfLoadError', 'TCPSPLIT_ERR_BPF_LOAD');
export const NfqueueError = define('NfqueueError', 'TCPSPLIT_ERR_NFQUEUE');
export const SdNotifyError = define('SdNotifyError', 'TCPSPLIT_ERR_SD_NOTIFY');

// ---- early SYN (src/intercept) -----------------------------------------------
export const SynRulesError = define('SynRulesError', 'TCPSPLIT_ERR_SYN_RULES');
export const EarlySynUnavailableError = define('EarlySynUnavailableError', 'TCPSPLIT_ERR_EARLY_SYN_UNAVAILABLE');
export const EarlyLegUnclaimedError = define('EarlyLegUnclaimedError', 'TCPSPLIT_ERR_EARLY_LEG_UNCLAIMED');

// ---- Turbo-Start (src/turbo) ------------------------------------------------
export const TurboRouteError = define('TurboRouteError', 'TCPSPLIT_ERR_TURBO_ROUTE');

// ---- transparent interception (src/intercept, docs/intercept.md) -----------
export const InterceptError = define('InterceptError', 'TCPSPLIT_ERR_INTERCEPT');
export const InterceptPermissionError = define('InterceptPermissionError', 'TCPSPLIT_ERR_INTERCEPT_PERMISSION');
export const OriginalDestinationError = define('OriginalDestinationError', 'TCPSPLIT_ERR_ORIGINAL_DST');

// ---- control API (src/control, docs/control.md) -----------------------------
export const ControlSocketError = define('ControlSocketError', 'TCPSPLIT_ERR_CONTROL_SOCKET');
export const ControlRequestError = define('ControlRequestError', 'TCPSPLIT_ERR_CONTROL_REQUEST');

// ---- lab -------------------------------------------------------------------
export const LabError = define('LabError', 'TCPSPLIT_ERR_LAB');
export const LabConfigError = define('LabConfigError', 'TCPSPLIT_ERR_LAB_CONFIG');
export const LabToolMissingError = define('LabToolMissingError', 'TCPSPLIT_ERR_LAB_TOOL_MISSING');
export const LabNotRootError = define('LabNotRootError', 'TCPSPLIT_ERR_LAB_NOT_ROOT');
export const LabBusyError = define('LabBusyError', 'TCPSPLIT_ERR_LAB_BUSY');
export const LabNotUpError = define('LabNotUpError', 'TCPSPLIT_ERR_LAB_NOT_UP');

/** Every error class, for docs and tests. */
export const ALL_ERRORS = [
  ConfigError, KeyError, InsecureAcceptError, RestartRequiredError,
  BadMagicError, BadVersionError, BadFlagsError, BadAddressTypeError, BadAddressError, BadPortError,
  HeaderAuthError, HeaderStaleError, HeaderReplayError, ReplayCacheFullError, HeaderTimeoutError,
  HeaderTruncatedError, BadFrameError, IdleLimitError, IdleClosedError,
  PolicyDeniedError, ResolveError, ConnectTimeoutError, ConnectError, PeerResetError, LegError, IdleTimeoutError,
  DrainTimeoutError, ListenError, OverloadError, PendingEvictedError, FdLimitError, WorkerExitError, UnpairedError,
  SysCallError, FfiUnavailableError, SocketOptionsError, BpfLoadError, NfqueueError, SdNotifyError,
  SynRulesError, EarlySynUnavailableError, EarlyLegUnclaimedError, TurboRouteError,
  InterceptError, InterceptPermissionError, OriginalDestinationError,
  ControlSocketError, ControlRequestError,
  LabError, LabConfigError, LabToolMissingError, LabNotRootError, LabBusyError, LabNotUpError,
] as const;

/** The code of an error that is not a TcpsplitError and has no code of its own: a bug. */
export const INTERNAL_ERROR_CODE = 'TCPSPLIT_ERR_INTERNAL';

export function errorCode(err: unknown): string {
  if (err instanceof TcpsplitError) return err.code;
  if (err instanceof Error && 'code' in err && typeof err.code === 'string') return err.code;
  return INTERNAL_ERROR_CODE;
}
