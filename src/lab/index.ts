/**
 * src/lab: the emulated WAN (docs/lab.md). The surface later code uses:
 *
 *   import { Lab, PROFILES, applyLinkFlag, startNginx, ADDRESS_PLAN } from '../lab/index.js';
 */
export { ADDRESS_PLAN, ADDRESS_PLAN6, LINK_PLAN6, address6Of, LAB_NODES, LINK_NAMES, LINK_PLAN, ROUTES, addressOf, type AddressSide, type LabNode, type LinkName } from './address-plan.js';
export { Lab, cleanupStaleLab, type ExecOptions, type LabOptions, type LabStatus, type LinkStatus } from './lab.js';
export {
  DEFAULT_DIRECTION, PROFILES, applyLinkFlag, profileFromDelays, scaleDelays, verifyProfile,
  type DirectionConfig, type LabProfile, type LinkConfig, type QueueLimit,
} from './link-config.js';
export { loadProfile, parseProfileText } from './profile-file.js';
export { startNginx, type NginxOptions, type NginxServer } from './nginx.js';
export { startSshd, type SshdOptions, type SshServer } from './sshd.js';
export type { CommandResult } from './command.js';
export type { DirectionCounters } from './emulator/counters.js';
